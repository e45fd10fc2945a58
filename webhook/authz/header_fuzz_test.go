package authz

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzOriginalPath feeds arbitrary X-Original-URL (ingress-nginx) and X-Forwarded-Uri
// (Traefik, Caddy) values, once or repeated, to OriginalPath, which decides the path that
// public paths are matched against. Seeds are in testdata/fuzz/FuzzOriginalPath. Invariants:
//   - the path holds no query or fragment; from X-Original-URL it is empty (never public) or
//     starts with "/";
//   - the path is text of the header it came from, as written: nothing decoded or cleaned
//     (the engine decides what a path means, once);
//   - a repeated header, or both headers with different paths, is a conflict (never public);
//     both with the same path is not;
//   - for an absolute http(s) URL without escapes, the path is the one net/url finds.
func FuzzOriginalPath(f *testing.F) {
	for _, s := range []struct {
		ou, fu   string
		twiceOU  bool
		twiceFU  bool
		withBoth bool
	}{
		{"https://shop.example.com/orders/42?x=1", "/orders/42?x=1", false, false, true},
		{"https://shop.example.com", "", false, false, false},
		{"//evil.example.com/public/", "/public/", false, false, true},
		{"https://h/public/..%2fadmin", "/public/../admin", false, false, true},
		{"/public/#frag", "/public/", true, false, true},
		{"http://h?q/p", "", false, true, false},
		{"", "/healthz", false, false, false},
		{"shop.example.com/orders", "", false, false, false},
	} {
		f.Add(s.ou, s.fu, s.twiceOU, s.twiceFU, s.withBoth)
	}
	f.Fuzz(func(t *testing.T, ou, fu string, twiceOU, twiceFU, both bool) {
		h := http.Header{}
		if ou != "" || !both {
			h[hdrOriginalURL] = []string{ou}
			if twiceOU {
				h[hdrOriginalURL] = append(h[hdrOriginalURL], ou)
			}
		}
		if both || ou == "" {
			h[hdrForwardedURI] = []string{fu}
			if twiceFU {
				h[hdrForwardedURI] = append(h[hdrForwardedURI], fu)
			}
		}
		path, conflict := OriginalPath(h)
		_, hasOU := h[hdrOriginalURL]
		_, hasFU := h[hdrForwardedURI]
		if strings.ContainsAny(path, "?#") {
			t.Fatalf("path %q holds a query or fragment", path)
		}
		if hasOU {
			// An X-Original-URL that is neither an absolute URL nor an origin-form target
			// gives no path at all.
			if path != "" && !strings.HasPrefix(path, "/") {
				t.Fatalf("X-Original-URL %q: path %q does not start with /", ou, path)
			}
			if !strings.Contains(ou, path) {
				t.Fatalf("path %q is not text of X-Original-URL %q", path, ou)
			}
		} else if !strings.HasPrefix(fu, path) {
			// X-Forwarded-Uri is the path and query as sent; a value that is not a path is
			// passed on as it is and never matches a public path (they start with "/").
			t.Fatalf("path %q is not the start of X-Forwarded-Uri %q", path, fu)
		}
		repeated := len(h[hdrOriginalURL]) > 1 || len(h[hdrForwardedURI]) > 1
		if repeated && !conflict {
			t.Fatalf("repeated header without a conflict: %q", h)
		}
		if hasOU && hasFU && !repeated {
			other := fu
			if i := strings.IndexAny(other, "?#"); i >= 0 {
				other = other[:i]
			}
			if (path != other) != conflict {
				t.Fatalf("X-Original-URL path %q, X-Forwarded-Uri path %q: conflict %v", path, other, conflict)
			}
		}
		if hasOU && !strings.ContainsAny(ou, "%#\\ \t") {
			if u, err := url.Parse(ou); err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Opaque == "" && !strings.HasPrefix(ou, "/") {
				want := u.Path
				if want == "" {
					want = "/"
				}
				if path != want {
					t.Fatalf("X-Original-URL %q: path %q, net/url says %q", ou, path, want)
				}
			}
		}
	})
}
