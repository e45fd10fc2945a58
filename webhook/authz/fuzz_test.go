package authz

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/claimguard/claimguard/internal/policy"
)

// FuzzServeHTTP sends arbitrary paths, original-request headers and
// Authorization values: the server never panics, answers only statuses of
// the contract, always a reason code with a 401 or 403, and never echoes
// the Authorization value.
func FuzzServeHTTP(f *testing.F) {
	ts := newTestServer(f, defaultPolicies(f, policy.NewCache(100)), nil)
	good := token(f, "ES256", nil)
	for _, seed := range [][4]string{
		{"/authz/shop/orders", "https://h/public/a", "", "Bearer " + good},
		{"/authz/shop/orders", "", "/public/../x", "Bearer " + good[:40]},
		{"/authz/shop//orders", "//x", "/a", "bearer"},
		{"/authz/shop/orders%2F", "http://h", "/public/%2e%2e", "Basic x"},
		{"/metrics", "", "", ""},
		{"/authz/shop/audit", "h/p", "?q", "Bearer a.b.c"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3])
	}
	f.Fuzz(func(t *testing.T, path, originalURL, forwardedURI, authorization string) {
		r := httptest.NewRequest("GET", "http://claimguard.local/", nil)
		r.URL.Path, r.URL.RawPath = path, path
		set := func(name, v string) {
			if v != "" {
				r.Header[name] = []string{v}
			}
		}
		set("X-Original-Url", originalURL)
		set("X-Forwarded-Uri", forwardedURI)
		set("Authorization", authorization)
		w := httptest.NewRecorder()
		ts.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK, http.StatusNotFound, http.StatusServiceUnavailable:
		case http.StatusUnauthorized, http.StatusForbidden:
			if !policy.Reason(w.Header().Get("X-Claimguard-Reason")).Valid() {
				t.Fatalf("%d without a valid reason code: %q", w.Code, w.Header().Get("X-Claimguard-Reason"))
			}
		default:
			t.Fatalf("status %d is not in the contract", w.Code)
		}
		if (path == "/authz" || strings.HasPrefix(path, "/authz/")) && w.Code == http.StatusNotFound {
			t.Fatalf("an /authz path answered 404: %q", path)
		}
		if len(authorization) > 16 && strings.Contains(w.Body.String()+strings.Join(w.Header().Values("Www-Authenticate"), ""), authorization) {
			t.Fatal("the answer echoes the Authorization value")
		}
	})
}
