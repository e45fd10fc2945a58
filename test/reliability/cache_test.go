package reliability

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/policy"
)

// cacheTokens is how many distinct tokens TestTokenCacheBound sends: 200,000 in make test
// (50,000 under the race detector), or CLAIMGUARD_RELIABILITY_TOKENS
// (hack/reliability/token-cache.sh sets 1,000,000).
func cacheTokens(t *testing.T) int {
	t.Helper()
	if v := os.Getenv("CLAIMGUARD_RELIABILITY_TOKENS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("CLAIMGUARD_RELIABILITY_TOKENS=%q: not a positive number", v)
		}
		return n
	}
	if raceEnabled {
		return 50000
	}
	return 200000
}

// hs256Minter signs distinct valid tokens fast: the payload is a template with the token's
// number in sub and jti, signed with the idp's HMAC secret (HS256 costs a microsecond where
// RS256 costs a millisecond, and the cache stores allows the same way whatever the alg).
type hs256Minter struct {
	head     string
	mac      func() []byte
	prefix   string
	now, exp int64
}

func newHS256Minter() *hs256Minter {
	now := time.Now().Unix()
	return &hs256Minter{
		head:   base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","kid":"hs1","typ":"JWT"}`)),
		prefix: fmt.Sprintf(`{"iss":%q,"aud":%q,"scope":"openid %s","iat":%d,"exp":%d,`, idp().URL, audience, scope, now, now+3600),
	}
}

func (m *hs256Minter) token(i int) string {
	payload := m.prefix + `"sub":"user-` + strconv.Itoa(i) + `","jti":"` + strconv.Itoa(i) + `"}`
	input := m.head + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	mac := hmac.New(sha256.New, idp().HMAC)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestTokenCacheBound sends a stream of distinct valid tokens (every one a miss, verified and
// stored) through a policy with the verified-token cache of the manager (10,000 entries) and
// of serve (100,000 entries), and measures the live heap the cache holds at the end: it stays
// within the cache's byte bound (2 KiB per entry) plus 4 MiB of tolerance, the entry count
// within its bound, and the cache still answers (the newest tokens hit).
//
// It is not parallel: the heap is measured while the parallel scenarios are paused.
func TestTokenCacheBound(t *testing.T) {
	n := cacheTokens(t)
	for _, entries := range []int{10000, 100000} {
		t.Run(fmt.Sprintf("%d entries", entries), func(t *testing.T) {
			spec := decodePolicy(t, policyDoc("shop", "orders", "secretRef: {name: idp-hmac, key: jwks.json}", "")).Spec
			spec.Issuers[0].Algorithms = []authv1alpha1.Algorithm{"HS256"}
			cache := policy.NewCache(entries)
			p, errs := policy.Compile(&spec, policy.CompileOptions{
				Namespace: "shop", Name: "orders", Cache: cache,
				Secrets: func(ns, name, key string) ([]byte, error) { return []byte(idp().SecretJWKS()), nil },
			})
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			m := newHS256Minter()
			const bytesPerEntry = 2048 // policy.CacheOptions.MaxBytes default
			bound := uint64(entries * bytesPerEntry)
			const tolerance = 4 << 20

			before := heapInUse()
			start := time.Now()
			req := &policy.Request{Header: http.Header{}, Path: "/orders"}
			var peak uint64
			for i := range n {
				req.Header["Authorization"] = []string{"Bearer " + m.token(i)}
				if d := p.Decide(req); !d.Allowed || d.Status != http.StatusOK {
					t.Fatalf("token %d: %d %s (%s)", i, d.Status, d.Reason, d.Description)
				}
				if i%(n/10+1) == 0 && i > 0 {
					h := heapInUse()
					peak = max(peak, h-min(before, h))
				}
			}
			took := time.Since(start)
			after := heapInUse()
			held := after - min(before, after)
			peak = max(peak, held)
			st := cache.Stats()

			if st.Size > entries {
				t.Errorf("%d entries, bound %d", st.Size, entries)
			}
			if uint64(st.Bytes) > bound {
				t.Errorf("the cache accounts %d bytes, bound %d", st.Bytes, bound)
			}
			if peak > bound+tolerance {
				t.Errorf("the cache holds %d MiB of live heap (peak %d MiB) after %d distinct tokens, bound %d MiB + %d MiB",
					held>>20, peak>>20, n, bound>>20, tolerance>>20)
			}
			if int(st.Evictions) < n-entries {
				t.Errorf("%d evictions for %d tokens into %d entries", st.Evictions, n, entries)
			}
			// The newest tokens are in the cache: deciding them again is a hit.
			hits := st.Hits
			for i := n - 100; i < n; i++ {
				req.Header["Authorization"] = []string{"Bearer " + m.token(i)}
				p.Decide(req)
			}
			if got := cache.Stats().Hits - hits; got < 90 {
				t.Errorf("%d of the 100 newest tokens hit the cache, want at least 90", got)
			}
			t.Logf("%d distinct tokens in %s (%.1f µs each): %d entries, accounted %.1f MiB (%d B/entry), live heap held %.1f MiB (%d B/entry), peak %.1f MiB; bound %d MiB",
				n, took.Round(time.Millisecond), float64(took.Microseconds())/float64(n), st.Size,
				float64(st.Bytes)/(1<<20), st.Bytes/int64(max(st.Size, 1)),
				float64(held)/(1<<20), held/uint64(max(st.Size, 1)), float64(peak)/(1<<20), bound>>20)
			runtime.KeepAlive(p)
		})
	}
}
