package policy

import (
	"strings"
	"testing"
)

func TestNormalizePublicPath(t *testing.T) {
	tests := []struct {
		raw    string
		want   string
		wantOK bool
	}{
		{"/healthz", "/healthz", true},
		{"/public/a/b", "/public/a/b", true},
		{"/", "/", true},
		{"/a%20b", "/a b", true},
		{"/%70ublic/x", "/public/x", true},
		{"/public/", "/public/", true},
		{"", "", false},
		{"healthz", "", false},
		{"/public/../admin", "", false},
		{"/public/./x", "", false},
		{"/public/..", "", false},
		{"/public/%2e%2e/admin", "", false},
		{"/public/%2E/x", "", false},
		{"/public%2fadmin", "", false},
		{"/public%2Fadmin", "", false},
		{"/public\\admin", "", false},
		{"/public%5cadmin", "", false},
		{"/public;x=1", "", false},
		{"/public%3bx", "", false},
		{"//public", "", false},
		{"/public//x", "", false},
		{"/public/%252e%252e/admin", "", false},
		{"/public/%zz", "", false},
		{"/public/%4", "", false},
		{"/public/%", "", false},
		{"/public/%00", "", false},
		{"/public/\x7f", "", false},
		{"/a/..b", "/a/..b", true},
		{"/a/.b", "/a/.b", true},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, ok := NormalizePublicPath(tt.raw)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("NormalizePublicPath(%q) = %q, %v; want %q, %v", tt.raw, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestPublicMatcher(t *testing.T) {
	m := publicMatcher{exact: []string{"/healthz"}, prefixes: []string{"/public/"}}
	tests := []struct {
		name string
		req  Request
		want bool
	}{
		{"exact", Request{Path: "/healthz"}, true},
		{"exact not prefix", Request{Path: "/healthz/x"}, false},
		{"prefix", Request{Path: "/public/img.png"}, true},
		{"prefix itself", Request{Path: "/public/"}, true},
		{"prefix without slash", Request{Path: "/public"}, false},
		{"look-alike", Request{Path: "/publicity"}, false},
		{"encoded", Request{Path: "/%70ublic/x"}, true},
		{"traversal", Request{Path: "/public/../admin"}, false},
		{"conflict", Request{Path: "/healthz", PathConflict: true}, false},
		{"no path", Request{}, false},
		{"case differs", Request{Path: "/HEALTHZ"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := m.match(&tt.req); got != tt.want {
				t.Errorf("match = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzNormalizePublicPath(f *testing.F) {
	for _, s := range []string{"/healthz", "/public/%2e%2e/x", "/a%2fb", "//x", "/a/./b", "/%25", "/a;b", "/%c3%a9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, ok := NormalizePublicPath(raw)
		if !ok {
			if got != "" {
				t.Fatalf("not ok but returned %q", got)
			}
			return
		}
		// A normalised path is a fixed point and holds none of the refused forms.
		if again, ok2 := NormalizePublicPath(got); !ok2 || again != got {
			t.Fatalf("%q -> %q is not a fixed point (%q, %v)", raw, got, again, ok2)
		}
		if !strings.HasPrefix(got, "/") || strings.Contains(got, "//") || strings.ContainsAny(got, "%\\;") {
			t.Fatalf("%q -> %q holds a refused form", raw, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q holds a dot segment", raw, got)
			}
		}
	})
}
