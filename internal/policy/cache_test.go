package policy

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// movableClock is a test clock that can be moved.
type movableClock struct{ ns atomic.Int64 }

func newClock(t time.Time) *movableClock {
	c := &movableClock{}
	c.ns.Store(t.UnixNano())
	return c
}
func (c *movableClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *movableClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func cachedOptions(c *Cache, clk *movableClock) CompileOptions {
	o := testOptions()
	o.Cache, o.Clock = c, clk.now
	return o
}

func TestCacheHit(t *testing.T) {
	c := NewCache(100)
	clk := newClock(testNow)
	p := mustCompile(t, baseSpec(), cachedOptions(c, clk))
	req := bearer(fixtures().signer("RS256").token(t, nil, claims()))
	first := p.Decide(req)
	second := p.Decide(req)
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("hit differs from miss (-miss +hit):\n%s", diff)
	}
	if !second.Allowed || len(second.Headers) != 2 {
		t.Errorf("decision = %+v", second)
	}
	st := c.Stats()
	if st.Hits != 1 || st.Misses != 1 || st.Size != 1 || st.Bytes <= 0 {
		t.Errorf("stats = %+v", st)
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d", c.Len())
	}
}

func TestCacheRevisionChangeIsAMiss(t *testing.T) {
	c := NewCache(100)
	clk := newClock(testNow)
	req := bearer(fixtures().signer("RS256").token(t, nil, claims()))
	o := cachedOptions(c, clk)
	p1 := mustCompile(t, baseSpec(), o)
	if d := p1.Decide(req); !d.Allowed {
		t.Fatalf("decision = %+v", d)
	}
	// The edited policy now requires a claim the token lacks: it must not
	// see the old verdict.
	spec := baseSpec()
	spec.RequiredClaims = append(spec.RequiredClaims, authv1alpha1.RequiredClaim{Claim: "tenant", Operator: authv1alpha1.OpExists})
	o.Revision = "2"
	p2 := mustCompile(t, spec, o)
	if d := p2.Decide(req); d.Reason != ClaimMissing {
		t.Errorf("after revision change: %+v", d)
	}
	// Same revision under another name is another policy too.
	o.Revision, o.Name = "1", "other"
	p3 := mustCompile(t, spec, o)
	if d := p3.Decide(req); d.Reason != ClaimMissing {
		t.Errorf("other policy, same revision: %+v", d)
	}
	if st := c.Stats(); st.Hits != 0 || st.Misses != 3 {
		t.Errorf("stats = %+v", st)
	}
}

func TestCacheRespectsExpiry(t *testing.T) {
	c := NewCache(100)
	clk := newClock(testNow)
	p := mustCompile(t, baseSpec(), cachedOptions(c, clk))
	req := bearer(fixtures().signer("RS256").token(t, nil, withClaims(func(m map[string]any) { m["exp"] = testNow.Unix() + 60 })))
	if d := p.Decide(req); !d.Allowed {
		t.Fatalf("decision = %+v", d)
	}
	clk.add(59 * time.Second)
	if d := p.Decide(req); !d.Allowed {
		t.Fatalf("before exp: %+v", d)
	}
	if st := c.Stats(); st.Hits != 1 {
		t.Fatalf("stats = %+v, want one hit", st)
	}
	// At exp the entry is gone; the full path applies the 30s skew...
	clk.add(time.Second)
	if d := p.Decide(req); !d.Allowed {
		t.Fatalf("at exp (within skew): %+v", d)
	}
	if st := c.Stats(); st.Hits != 1 {
		t.Errorf("an entry was used at exp: %+v", st)
	}
	// ...and past exp + skew the token is expired.
	clk.add(31 * time.Second)
	if d := p.Decide(req); d.Reason != TokenExpired {
		t.Errorf("past exp+skew: %+v", d)
	}
}

func TestCacheNoExpiryTTLAndNBF(t *testing.T) {
	c := NewCacheWithOptions(CacheOptions{MaxEntries: 10, NoExpiryTTL: 5 * time.Second})
	clk := newClock(testNow)
	spec := baseSpec()
	spec.Issuers[0].RequireExpiry = ptr(false)
	p := mustCompile(t, spec, cachedOptions(c, clk))
	req := bearer(fixtures().signer("RS256").token(t, nil, withClaims(func(m map[string]any) { delete(m, "exp") })))
	p.Decide(req)
	p.Decide(req)
	clk.add(6 * time.Second)
	p.Decide(req)
	if st := c.Stats(); st.Hits != 1 || st.Misses != 2 {
		t.Errorf("stats = %+v, want the entry dropped after NoExpiryTTL", st)
	}
	// A clock that goes back before nbf-skew does not use the entry.
	clk.add(-time.Hour)
	if d := p.Decide(req); d.Reason != TokenNotYetValid {
		t.Errorf("before nbf: %+v", d)
	}
}

func TestCacheOnlyTokenDependentVerdicts(t *testing.T) {
	c := NewCache(100)
	clk := newClock(testNow)
	p := mustCompile(t, baseSpec(), cachedOptions(c, clk))
	k := fixtures()
	cached := []*Request{
		bearer(k.signer("RS256").token(t, nil, withClaims(func(m map[string]any) { delete(m, "sub") }))),
		bearer(k.signer("RS256").token(t, nil, withClaims(func(m map[string]any) { m["aud"] = "x" }))),
	}
	notCached := []*Request{
		bearer(signer{"RS256", k.attacker, "rsa1"}.token(t, nil, claims())), // bad signature
		bearer(signer{"RS256", k.rsa, "nope"}.token(t, nil, claims())),      // unknown kid
		bearer(k.signer("RS256").token(t, nil, withClaims(func(m map[string]any) { m["exp"] = 1 }))),
		bearer("garbage"),
		{Header: http.Header{}},
	}
	for _, r := range append(notCached, cached...) {
		first := p.Decide(r)
		if again := p.Decide(r); !cmp.Equal(first, again) {
			t.Errorf("decision changed on repeat: %+v vs %+v", first, again)
		}
	}
	if got := c.Len(); got != len(cached) {
		t.Errorf("cache holds %d entries, want %d (only post-signature verdicts)", got, len(cached))
	}
}

func TestCacheBounded(t *testing.T) {
	c := NewCache(10)
	clk := newClock(testNow)
	p := mustCompile(t, baseSpec(), cachedOptions(c, clk))
	rs := fixtures().signer("RS256")
	for i := 0; i < 40; i++ {
		p.Decide(bearer(rs.token(t, nil, withClaims(func(m map[string]any) { m["jti"] = fmt.Sprint(i) }))))
		if n := c.Len(); n > 10 {
			t.Fatalf("after %d tokens the cache holds %d entries", i+1, n)
		}
	}
	if st := c.Stats(); st.Evictions < 30 {
		t.Errorf("stats = %+v, want evictions", st)
	}
	// Bounded by bytes too: entries with big headers.
	small := NewCacheWithOptions(CacheOptions{MaxEntries: 1000, MaxBytes: 30000})
	spec := baseSpec()
	spec.ForwardClaims = append(spec.ForwardClaims, authv1alpha1.ForwardClaim{Claim: "blob", Header: "X-Blob"})
	pb := mustCompile(t, spec, cachedOptions(small, clk))
	for i := 0; i < 20; i++ {
		pb.Decide(bearer(rs.token(t, nil, withClaims(func(m map[string]any) { m["blob"] = fmt.Sprintf("%d%01000d", i, 0) }))))
	}
	if st := small.Stats(); st.Bytes > 30000 || st.Size >= 20 || st.Size == 0 {
		t.Errorf("byte bound exceeded: %+v", st)
	}
}

func TestCacheHitAllocatesNothing(t *testing.T) {
	c := NewCache(100)
	clk := newClock(testNow)
	p := mustCompile(t, baseSpec(), cachedOptions(c, clk))
	req := bearer(fixtures().signer("ES256").token(t, nil, claims()))
	if d := p.Decide(req); !d.Allowed {
		t.Fatalf("decision = %+v", d)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if d := p.Decide(req); !d.Allowed {
			t.Fatal("denied")
		}
	})
	if allocs != 0 {
		t.Errorf("cache hit allocates %.1f times per decision, want 0", allocs)
	}
}

func TestCacheCollapsesConcurrentMisses(t *testing.T) {
	c := NewCache(100)
	clk := newClock(testNow)
	p := mustCompile(t, baseSpec(), cachedOptions(c, clk))
	req := bearer(fixtures().signer("RS256").token(t, nil, claims()))
	var verifies atomic.Int32
	release := make(chan struct{})
	testHookVerify = func() {
		verifies.Add(1)
		<-release
	}
	defer func() { testHookVerify = nil }()
	const n = 16
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d := p.Decide(req); !d.Allowed {
				t.Errorf("decision = %+v", d)
			}
		}()
	}
	// Hold the first verification until every request has missed and had
	// time to join it.
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Misses < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(release)
	wg.Wait()
	st := c.Stats()
	if got := verifies.Load(); got != 1 {
		t.Errorf("%d verifications for %d concurrent requests, want 1", got, n)
	}
	if st.Misses != n || st.Collapsed != n-1 || st.Size != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestConcurrentDecide(t *testing.T) {
	k := fixtures()
	c := NewCache(50)
	clk := newClock(testNow)
	spec := baseSpec()
	spec.Rules = []authv1alpha1.Rule{{Expression: "'admin' in claims.realm_access.roles"}}
	for _, cache := range []*Cache{nil, c} {
		p := mustCompile(t, spec, cachedOptions(cache, clk))
		type job struct {
			req  *Request
			want Reason
		}
		var jobs []job
		for i, alg := range []string{"RS256", "PS256", "ES256", "EdDSA"} {
			jobs = append(jobs,
				job{bearer(k.signer(alg).token(t, nil, withClaims(func(m map[string]any) { m["jti"] = i }))), ""},
				job{bearer(k.signer(alg).token(t, nil, withClaims(func(m map[string]any) { m["email_verified"] = "no" }))), ClaimMismatch},
			)
			if alg == "RS256" || alg == "PS256" {
				jobs = append(jobs, job{bearer(signer{alg, k.attacker, ""}.token(t, nil, claims())), ""})
			}
		}
		// The attacker's signer cannot sign non-RSA algs properly; compute what
		// Decide says once, serially, and require the same under concurrency.
		for i := range jobs {
			jobs[i].want = p.Explain1(jobs[i].req)
		}
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					j := jobs[(g+i)%len(jobs)]
					if d := p.Decide(j.req); d.Reason != j.want {
						t.Errorf("concurrent decision %q, serial %q", d.Reason, j.want)
						return
					}
				}
			}(g)
		}
		wg.Wait()
	}
}

// Explain1 returns the reason Explain gives, the uncached reference.
func (p *Policy) Explain1(r *Request) Reason {
	d, _ := p.Explain(r)
	return d.Reason
}

func BenchmarkCacheHitProfile(b *testing.B) {
	c := NewCache(100)
	clk := newClock(testNow)
	p := mustCompile(b, baseSpec(), cachedOptions(c, clk))
	req := bearer(fixtures().signer("ES256").token(b, nil, claims()))
	p.Decide(req)
	b.ReportAllocs()
	for b.Loop() {
		p.Decide(req)
	}
}
