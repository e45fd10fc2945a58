package authz

import (
	"net/http"
	"testing"

	"github.com/claimguard/claimguard/internal/policy"
)

// discardWriter is a reusable ResponseWriter that allocates nothing, so
// AllocsPerRun counts the handler's allocations only.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) reset()                      { clear(w.h); w.status = 0 }

// TestCachedAllowAllocatesNothing: a cache-hit allow with forwarded claim
// headers costs no allocation in our code (routing, decision, headers,
// metrics).
func TestCachedAllowAllocatesNothing(t *testing.T) {
	cache := policy.NewCache(1000)
	ts := newTestServer(t, defaultPolicies(t, cache), nil)
	for _, alg := range []string{"RS256", "ES256"} {
		t.Run(alg, func(t *testing.T) {
			r := request("GET", "/authz/shop/orders", "Authorization: Bearer "+token(t, alg, nil), "X-Original-URL: https://shop.example.com/orders/1?x=1", "X-Request-ID: abc")
			w := &discardWriter{h: http.Header{}}
			ts.ServeHTTP(w, r) // warm the cache and the header memo
			if w.status != http.StatusOK || w.h.Get("X-Auth-Subject") != "alice" {
				t.Fatalf("warm-up: status %d, headers %v", w.status, w.h)
			}
			allocs := testing.AllocsPerRun(200, func() {
				w.reset()
				ts.ServeHTTP(w, r)
			})
			if w.status != http.StatusOK || w.h.Get("X-Auth-Roles") != "admin,ops" {
				t.Fatalf("status %d, headers %v", w.status, w.h)
			}
			if allocs != 0 {
				t.Errorf("cached allow: %v allocations per request, want 0", allocs)
			}
		})
	}
}

// BenchmarkHandler measures the handler alone on a cached allow, a cached
// denial, a public path and an unknown policy.
func BenchmarkHandler(b *testing.B) {
	cache := policy.NewCache(1000)
	ts := newTestServer(b, defaultPolicies(b, cache), nil)
	cases := []struct {
		name string
		r    *http.Request
	}{
		{"allow/RS256", request("GET", "/authz/shop/orders", "Authorization: Bearer "+token(b, "RS256", nil), "X-Original-URL: https://shop.example.com/orders/1")},
		{"allow/ES256", request("GET", "/authz/shop/orders", "Authorization: Bearer "+token(b, "ES256", nil), "X-Original-URL: https://shop.example.com/orders/1")},
		{"deny/claim_mismatch", request("GET", "/authz/shop/orders", "Authorization: Bearer "+token(b, "RS256", func(c map[string]any) { c["scope"] = "x" }))},
		{"public", request("GET", "/authz/shop/orders", "X-Original-URL: https://shop.example.com/public/a.css")},
		{"unknown_policy", request("GET", "/authz/shop/nope")},
	}
	ts.log = ts.log.V(100) // the denial log line is not what is measured here
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			w := &discardWriter{h: http.Header{}}
			ts.ServeHTTP(w, c.r)
			b.ReportAllocs()
			for b.Loop() {
				w.reset()
				ts.ServeHTTP(w, c.r)
			}
		})
	}
}

func TestHeaderMemo(t *testing.T) {
	var m headerMemo
	a := []policy.Header{{Name: "X-A", Value: "1"}, {Name: "X-B", Value: "2"}}
	b := []policy.Header{{Name: "X-A", Value: "3"}}
	va := m.values(a)
	if len(va) != 2 || va[0][0] != "1" || va[1][0] != "2" {
		t.Fatalf("values(a) = %q", va)
	}
	if again := m.values(a); &again[0][0] != &va[0][0] {
		t.Error("the same slice was not served from the memo")
	}
	if vb := m.values(b); len(vb) != 1 || vb[0][0] != "3" {
		t.Errorf("values(b) = %q", vb)
	}
	for _, v := range va {
		if cap(v) != 1 {
			t.Errorf("shared value has spare capacity %d: an append would write into it", cap(v))
		}
	}
	// Many distinct slices (new tokens) evict entries but never mix values.
	for i := 0; i < 3*memoSlots; i++ {
		hs := []policy.Header{{Name: "X-N", Value: string(rune('a' + i%26))}}
		if v := m.values(hs); v[0][0] != hs[0].Value {
			t.Fatalf("slice %d got %q, want %q", i, v[0][0], hs[0].Value)
		}
	}
}
