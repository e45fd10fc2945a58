package keys

import (
	"context"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock is the Fetcher's injected clock; tests step it and then run due refreshes with
// runDue(true) instead of sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type response struct {
	status int
	body   string
	header http.Header
	delay  time.Duration // sleep before answering (cut short when the client gives up)
	block  bool          // never answer; wait for the client to give up
}

// testIdP is an identity provider double serving configurable responses and counting requests.
type testIdP struct {
	srv    *httptest.Server
	mu     sync.Mutex
	routes map[string]response
	hits   map[string]int
}

func newTestIdP(t *testing.T, useTLS bool) *testIdP {
	t.Helper()
	p := &testIdP{routes: map[string]response{}, hits: map[string]int{}}
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		resp, ok := p.routes[r.URL.Path]
		p.hits[r.URL.Path]++
		p.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if resp.block || resp.delay > 0 {
			var timeout <-chan time.Time
			if !resp.block {
				timeout = time.After(resp.delay)
			}
			select {
			case <-timeout:
			case <-r.Context().Done():
				// The client gave up: abort without a response, so no empty 200 can race with
				// the client's own timeout.
				panic(http.ErrAbortHandler)
			case <-release:
				panic(http.ErrAbortHandler)
			}
		}
		for k, vs := range resp.header {
			for _, v := range vs {
				w.Header().Add(k, v)
			}
		}
		status := resp.status
		if status == 0 {
			status = http.StatusOK
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte(resp.body))
	})
	p.srv = httptest.NewUnstartedServer(h)
	// Handshakes cut short by tests that close servers or time out are expected; keep them out
	// of the test output.
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	t.Cleanup(p.srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: unblocks handlers so Close returns
	return p
}

func (p *testIdP) set(path string, r response) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[path] = r
}

func (p *testIdP) hitCount(path string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[path]
}

func (p *testIdP) url(path string) string { return p.srv.URL + path }

// newTestFetcher returns a Fetcher on a fake clock, talking to p.
func newTestFetcher(t *testing.T, p *testIdP, mod func(*FetcherOptions)) (*Fetcher, *fakeClock) {
	t.Helper()
	clock := newFakeClock()
	opts := FetcherOptions{Client: p.srv.Client(), Clock: clock.Now, FetchTimeout: 2 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	f := NewFetcher(opts)
	t.Cleanup(f.cancel)
	return f, clock
}

func waitLoaded(t *testing.T, r *Remote) (*Set, State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.WaitLoaded(ctx); err != nil {
		t.Fatalf("WaitLoaded: %v", err)
	}
	return r.Current()
}

func rsaDoc(t *testing.T, kids ...string) string {
	t.Helper()
	privs := []func() *rsa.PrivateKey{testRSA, testRSA2}
	var keys []any
	for i, kid := range kids {
		keys = append(keys, with(jwkOf(t, &privs[i%2]().PublicKey), "kid", kid, "alg", "RS256", "use", "sig"))
	}
	return string(jwks(t, keys...))
}

func TestFetcherCacheControl(t *testing.T) {
	tests := []struct {
		name         string
		cacheControl []string
		want         time.Duration
	}{
		{"absent: default", nil, 5 * time.Minute},
		{"max-age within bounds", []string{"public, max-age=600"}, 10 * time.Minute},
		{"max-age below MinRefresh", []string{"max-age=5"}, time.Minute},
		{"max-age above MaxRefresh", []string{"max-age=31536000"}, 24 * time.Hour},
		{"huge max-age does not overflow", []string{"max-age=99999999999999999"}, 24 * time.Hour},
		{"quoted max-age", []string{`max-age="120"`}, 2 * time.Minute},
		{"no-cache", []string{"no-cache"}, time.Minute},
		{"no-store wins over max-age", []string{"no-store, max-age=3600"}, time.Minute},
		{"malformed max-age: default", []string{"max-age=soon"}, 5 * time.Minute},
		{"negative max-age: default", []string{"max-age=-5"}, 5 * time.Minute},
		{"two headers: the smaller", []string{"max-age=900", "max-age=300"}, 5 * time.Minute},
		{"case-insensitive", []string{"Max-Age=7200"}, 2 * time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestIdP(t, true)
			p.set("/jwks", response{body: rsaDoc(t, "k1"), header: http.Header{"Cache-Control": tc.cacheControl}})
			f, _ := newTestFetcher(t, p, nil)
			r, err := f.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, st := waitLoaded(t, r)
			if !st.Loaded || st.LastError != nil {
				t.Fatalf("state = %+v, want loaded", st)
			}
			got := st.NextRefresh.Sub(st.LastAttempt)
			// Up to 10% jitter, never later than the server asked.
			if got > tc.want || got < tc.want-tc.want/10 {
				t.Errorf("next refresh in %v, want within [%v, %v]", got, tc.want-tc.want/10, tc.want)
			}
		})
	}
}

func TestFetcherStaleWhileError(t *testing.T) {
	p := newTestIdP(t, true)
	p.set("/jwks", response{body: rsaDoc(t, "k1")})
	var events []RefreshEvent
	var evMu sync.Mutex
	f, clock := newTestFetcher(t, p, func(o *FetcherOptions) {
		o.Observer = ObserverFunc(func(ev RefreshEvent) {
			evMu.Lock()
			defer evMu.Unlock()
			ev.Duration = 0
			events = append(events, ev)
		})
	})
	r, err := f.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, st := waitLoaded(t, r)
	firstRefresh := st.LastRefresh
	if set.Lookup("k1") == nil || !st.Loaded || st.Stale {
		t.Fatalf("initial: kids %v state %+v", set.KIDs(), st)
	}

	// The IdP fails: the old set stays, marked stale, with the cause.
	p.set("/jwks", response{status: http.StatusInternalServerError, body: "oops"})
	clock.Advance(5 * time.Minute)
	f.runDue(true)
	set, st = r.Current()
	if set.Lookup("k1") == nil {
		t.Fatal("stale-while-error: the previous key set was dropped")
	}
	if !st.Loaded || !st.Stale || st.LastError == nil || !strings.Contains(st.LastError.Error(), "HTTP 500") {
		t.Fatalf("after failure: state %+v, want loaded, stale, HTTP 500", st)
	}
	if !st.LastRefresh.Equal(firstRefresh) {
		t.Errorf("LastRefresh moved on a failure: %v -> %v", firstRefresh, st.LastRefresh)
	}
	if d := st.NextRefresh.Sub(st.LastAttempt); d > time.Second || d <= 0 {
		t.Errorf("retry in %v, want the first backoff step (<= 1s)", d)
	}

	// Recovery with a rotated key.
	p.set("/jwks", response{body: rsaDoc(t, "k2")})
	clock.Advance(time.Second)
	f.runDue(true)
	set, st = r.Current()
	if set.Lookup("k2") == nil || set.Lookup("k1") != nil || st.Stale || st.LastError != nil {
		t.Fatalf("after recovery: kids %v state %+v", set.KIDs(), st)
	}

	evMu.Lock()
	defer evMu.Unlock()
	type evView struct {
		Trigger RefreshTrigger
		Err     bool
		Keys    int
		Stale   bool
	}
	var got []evView
	for _, ev := range events {
		if ev.Source != p.url("/jwks") {
			t.Errorf("event source %q, want %q", ev.Source, p.url("/jwks"))
		}
		got = append(got, evView{ev.Trigger, ev.Err != nil, ev.Keys, ev.Stale})
	}
	want := []evView{
		{TriggerInitial, false, 1, false},
		{TriggerScheduled, true, 1, true},
		{TriggerScheduled, false, 1, false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("observer events (-want +got):\n%s", diff)
	}
}

func TestFetcherNeverLoaded(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name    string
		resp    response
		uri     string // overrides the test IdP
		wantErr string
	}{
		{name: "HTTP 500", resp: response{status: 500}, wantErr: "/jwks: HTTP 500"},
		{name: "HTTP 404", resp: response{status: 404}, wantErr: "HTTP 404"},
		{name: "connection refused", uri: closedURL + "/jwks", wantErr: "connection refused"},
		{name: "html", resp: response{body: "<html>maintenance</html>", header: http.Header{"Content-Type": {"application/json"}}}, wantErr: "not a JWKS: the document is not a JSON object"},
		{name: "truncated JSON", resp: response{body: `{"keys":[{"kty":`}, wantErr: "not a JWKS: invalid JSON"},
		{name: "single JWK", resp: response{body: `{"kty":"RSA"}`}, wantErr: "not a JWKS: the document is a single JWK"},
		{name: "empty body", resp: response{body: ""}, wantErr: "not a JWKS: the document is empty"},
		{name: "no keys", resp: response{body: `{"keys":[]}`}, wantErr: "holds no keys"},
		{name: "no usable keys", resp: response{body: `{"keys":[{"kty":"oct","k":"AAAA","kid":"h"},{"kty":"RSA","kid":"x"}]}`},
			wantErr: `has no usable keys: keys[0] (kid "h"): oct (HMAC secret) keys are accepted only from a secretRef (and 1 more)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestIdP(t, false)
			p.set("/jwks", tc.resp)
			f, _ := newTestFetcher(t, p, func(o *FetcherOptions) { o.AllowInsecureHTTP = true })
			uri := tc.uri
			if uri == "" {
				uri = p.url("/jwks")
			}
			r, err := f.Source(SourceRef{URI: uri}, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			set, st := waitLoaded(t, r)
			if st.Loaded || st.Stale || set == nil || set.Len() != 0 {
				t.Fatalf("state %+v, set len %d: want not loaded and an empty set", st, set.Len())
			}
			if st.LastError == nil || !strings.Contains(st.LastError.Error(), tc.wantErr) {
				t.Fatalf("LastError = %v, want it to contain %q", st.LastError, tc.wantErr)
			}
			if !strings.HasPrefix(st.LastError.Error(), "fetch http://") && !strings.HasPrefix(st.LastError.Error(), "JWKS http://") {
				t.Errorf("LastError %q does not name the URL first", st.LastError)
			}
		})
	}
}

func TestFetcherStateBeforeFirstFetch(t *testing.T) {
	p := newTestIdP(t, true)
	p.set("/jwks", response{body: rsaDoc(t, "k1"), block: true})
	f, _ := newTestFetcher(t, p, nil)
	r, err := f.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set, st := r.Current()
	if set.Len() != 0 || st.Loaded || !errors.Is(st.LastError, ErrNotLoaded) {
		t.Fatalf("before the first fetch: len %d state %+v, want empty, ErrNotLoaded", set.Len(), st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := r.WaitLoaded(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitLoaded on a blocked fetch = %v, want DeadlineExceeded", err)
	}
}

func TestFetcherUnknownKIDFlood(t *testing.T) {
	p := newTestIdP(t, true)
	p.set("/jwks", response{body: rsaDoc(t, "k1")})
	f, clock := newTestFetcher(t, p, nil)
	r, err := f.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, r)
	if hits := p.hitCount("/jwks"); hits != 1 {
		t.Fatalf("initial fetch: %d hits, want 1", hits)
	}

	// A flood of tokens with made-up kids: one fetch per UnknownKIDInterval, whatever the rate.
	flood := func(n int) {
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if set := r.RefreshForKID(context.Background(), fmt.Sprintf("attacker-%d", i)); set.Lookup("k1") == nil {
					t.Error("RefreshForKID lost the known key")
				}
			}()
		}
		wg.Wait()
	}
	flood(200)
	if hits := p.hitCount("/jwks"); hits != 2 {
		t.Fatalf("after a flood: %d hits, want 2 (initial + one unknown-kid refresh)", hits)
	}
	clock.Advance(9 * time.Second)
	flood(50)
	if hits := p.hitCount("/jwks"); hits != 2 {
		t.Fatalf("within the interval: %d hits, want still 2", hits)
	}
	clock.Advance(2 * time.Second)
	flood(50)
	if hits := p.hitCount("/jwks"); hits != 3 {
		t.Fatalf("after the interval: %d hits, want 3", hits)
	}
	// A known kid never fetches.
	clock.Advance(time.Minute)
	r.RefreshForKID(context.Background(), "k1")
	if hits := p.hitCount("/jwks"); hits != 3 {
		t.Fatalf("known kid: %d hits, want 3", hits)
	}
}

func TestFetcherCollapsedRefreshFindsRotatedKey(t *testing.T) {
	p := newTestIdP(t, true)
	p.set("/jwks", response{body: rsaDoc(t, "k1")})
	f, _ := newTestFetcher(t, p, nil)
	r, err := f.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitLoaded(t, r)

	// The IdP rotates; the fetch is slow enough that all callers overlap with it.
	p.set("/jwks", response{body: rsaDoc(t, "k1", "k2"), delay: 50 * time.Millisecond})
	var wg sync.WaitGroup
	var found atomic.Int32
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if r.RefreshForKID(context.Background(), "k2").Lookup("k2") != nil {
				found.Add(1)
			}
		}()
	}
	wg.Wait()
	if hits := p.hitCount("/jwks"); hits != 2 {
		t.Errorf("concurrent refreshes: %d hits, want 2 (collapsed into one)", hits)
	}
	if found.Load() != 50 {
		t.Errorf("%d of 50 callers saw the rotated key, want all (callers join the running fetch)", found.Load())
	}
}

func TestFetcherSlowServer(t *testing.T) {
	p := newTestIdP(t, true)
	p.set("/jwks", response{block: true})
	const timeout = 100 * time.Millisecond
	f, clock := newTestFetcher(t, p, func(o *FetcherOptions) { o.FetchTimeout = timeout })
	r, err := f.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, st := waitLoaded(t, r)
	// Generous slack for a loaded machine: the point is "about FetchTimeout", not "forever".
	if waited := time.Since(start); waited > timeout+2*time.Second {
		t.Errorf("WaitLoaded took %v with FetchTimeout %v", waited, timeout)
	}
	if st.LastError == nil || !strings.Contains(st.LastError.Error(), "timed out after 100ms") {
		t.Fatalf("LastError = %v, want a timeout", st.LastError)
	}
	clock.Advance(time.Hour)
	start = time.Now()
	r.RefreshForKID(context.Background(), "k9")
	if waited := time.Since(start); waited > timeout+2*time.Second {
		t.Errorf("RefreshForKID took %v with FetchTimeout %v", waited, timeout)
	}
	// A caller's own deadline is honoured too.
	clock.Advance(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start = time.Now()
	r.RefreshForKID(ctx, "k10")
	if waited := time.Since(start); waited > timeout+2*time.Second {
		t.Errorf("RefreshForKID with a short context took %v", waited)
	}
}

func TestFetcherBodyCap(t *testing.T) {
	p := newTestIdP(t, true)
	doc := rsaDoc(t, "k1")
	p.set("/jwks", response{body: doc})
	f, _ := newTestFetcher(t, p, func(o *FetcherOptions) { o.MaxBodyBytes = int64(len(doc) - 1) })
	r, err := f.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, st := waitLoaded(t, r)
	want := fmt.Sprintf("response body exceeds %d bytes", len(doc)-1)
	if st.Loaded || st.LastError == nil || !strings.Contains(st.LastError.Error(), want) {
		t.Fatalf("state %+v, want %q", st, want)
	}
	// Exactly at the cap is fine.
	f2, _ := newTestFetcher(t, p, func(o *FetcherOptions) { o.MaxBodyBytes = int64(len(doc)) })
	r2, _ := f2.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
	if _, st := waitLoaded(t, r2); !st.Loaded {
		t.Fatalf("body at the cap: state %+v", st)
	}
}

func TestFetcherURLChecks(t *testing.T) {
	strict := NewFetcher(FetcherOptions{})
	t.Cleanup(strict.cancel)
	insecure := NewFetcher(FetcherOptions{AllowInsecureHTTP: true})
	t.Cleanup(insecure.cancel)
	tests := []struct {
		name    string
		f       *Fetcher
		ref     SourceRef
		opts    ParseOptions
		wantErr string
	}{
		{"http refused", strict, SourceRef{URI: "http://idp.example/jwks"}, ParseOptions{}, `jwks uri "http://idp.example/jwks": must use https`},
		{"ftp", insecure, SourceRef{URI: "ftp://idp.example/jwks"}, ParseOptions{}, "must be an absolute https URL"},
		{"relative", strict, SourceRef{URI: "/jwks"}, ParseOptions{}, "must be an absolute https URL"},
		{"no host", strict, SourceRef{URI: "https:///jwks"}, ParseOptions{}, "has no host"},
		{"credentials", strict, SourceRef{URI: "https://user:secret@idp.example/jwks"}, ParseOptions{}, "must not contain credentials"},
		{"fragment", strict, SourceRef{URI: "https://idp.example/jwks#x"}, ParseOptions{}, "must not have a fragment"},
		{"invalid", strict, SourceRef{URI: "https://idp example/%zz"}, ParseOptions{}, "not a valid URL"},
		{"discovery over http", strict, SourceRef{Issuer: "http://idp.example", Discovery: true}, ParseOptions{}, `issuer "http://idp.example": must use https`},
		{"discovery issuer with query", strict, SourceRef{Issuer: "https://idp.example/?tenant=1", Discovery: true}, ParseOptions{}, "must not have a query"},
		{"symmetric", strict, SourceRef{URI: "https://idp.example/jwks"}, ParseOptions{AllowSymmetric: true}, "never accepted from a remote key set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.f.Source(tc.ref, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Source err = %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "secret@") {
				t.Errorf("error leaks credentials: %v", err)
			}
		})
	}
	if _, err := strict.Source(SourceRef{URI: "http://idp.example/jwks"}, ParseOptions{}); !errors.Is(err, ErrInsecureURL) {
		t.Errorf("http URL: err = %v, want ErrInsecureURL", err)
	}
	if strict.SourceCount() != 0 {
		t.Errorf("refused refs created %d sources", strict.SourceCount())
	}
}

func TestFetcherHTTPOnlyWhenAllowed(t *testing.T) {
	p := newTestIdP(t, false)
	p.set("/jwks", response{body: rsaDoc(t, "k1")})
	f, _ := newTestFetcher(t, p, func(o *FetcherOptions) { o.AllowInsecureHTTP = true })
	r, err := f.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if set, _ := waitLoaded(t, r); set.Lookup("k1") == nil {
		t.Fatal("plain http with AllowInsecureHTTP did not load")
	}
}

func TestFetcherRedirects(t *testing.T) {
	plain := newTestIdP(t, false)
	plain.set("/jwks", response{body: rsaDoc(t, "k1")})
	p := newTestIdP(t, true)
	p.set("/to-http", response{status: http.StatusFound, header: http.Header{"Location": {plain.url("/jwks")}}})
	p.set("/hop1", response{status: http.StatusFound, header: http.Header{"Location": {"/hop2"}}})
	p.set("/hop2", response{status: http.StatusFound, header: http.Header{"Location": {"/hop3"}}})
	p.set("/hop3", response{status: http.StatusFound, header: http.Header{"Location": {"/hop4"}}})
	p.set("/hop4", response{status: http.StatusFound, header: http.Header{"Location": {"/jwks"}}})
	p.set("/once", response{status: http.StatusFound, header: http.Header{"Location": {"/jwks"}}})
	p.set("/jwks", response{body: rsaDoc(t, "k1")})
	f, _ := newTestFetcher(t, p, nil)
	for path, want := range map[string]string{
		"/to-http": "must use https",
		"/hop1":    "stopped after 3 redirects",
		"/once":    "",
	} {
		r, err := f.Source(SourceRef{URI: p.url(path)}, ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		_, st := waitLoaded(t, r)
		switch {
		case want == "" && !st.Loaded:
			t.Errorf("%s: one redirect must be followed: %v", path, st.LastError)
		case want != "" && (st.Loaded || st.LastError == nil || !strings.Contains(st.LastError.Error(), want)):
			t.Errorf("%s: state %+v, want error %q", path, st, want)
		}
	}
	if plain.hitCount("/jwks") != 0 {
		t.Error("the https-to-http redirect was followed")
	}
}

// discoveryIdP serves a discovery document naming issuer and jwksURI, and a JWKS at /jwks.
func discoveryIdP(t *testing.T, issuerPath string, mod func(p *testIdP) (issuer, jwksURI string)) (*testIdP, string) {
	t.Helper()
	p := newTestIdP(t, true)
	issuer := p.url(issuerPath)
	jwksURI := p.url("/jwks")
	if mod != nil {
		issuer, jwksURI = mod(p)
	}
	p.set(strings.TrimSuffix(issuerPath, "/")+"/.well-known/openid-configuration", response{
		body: fmt.Sprintf(`{"issuer":%q,"jwks_uri":%q,"id_token_signing_alg_values_supported":["RS256"]}`, issuer, jwksURI),
	})
	p.set("/jwks", response{body: rsaDoc(t, "k1")})
	return p, p.url(issuerPath)
}

func TestFetcherDiscovery(t *testing.T) {
	t.Run("happy path", func(t *testing.T) {
		p, issuer := discoveryIdP(t, "/realms/shop", nil)
		f, clock := newTestFetcher(t, p, nil)
		r, err := f.Source(SourceRef{Issuer: issuer, Discovery: true}, ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		set, st := waitLoaded(t, r)
		if set.Lookup("k1") == nil || st.URI != p.url("/jwks") {
			t.Fatalf("discovery: kids %v state %+v", set.KIDs(), st)
		}
		// Later refreshes reuse the jwks_uri; the discovery document is re-read after an hour.
		for range 3 {
			clock.Advance(5 * time.Minute)
			f.runDue(true)
		}
		if d, j := p.hitCount("/realms/shop/.well-known/openid-configuration"), p.hitCount("/jwks"); d != 1 || j != 4 {
			t.Errorf("after 3 refreshes: discovery %d hits, jwks %d hits; want 1 and 4", d, j)
		}
		clock.Advance(time.Hour)
		f.runDue(true)
		if d := p.hitCount("/realms/shop/.well-known/openid-configuration"); d != 2 {
			t.Errorf("after an hour: discovery %d hits, want 2", d)
		}
	})
	t.Run("trailing slash issuer", func(t *testing.T) {
		p, issuer := discoveryIdP(t, "/tenant/", nil)
		f, _ := newTestFetcher(t, p, nil)
		r, err := f.Source(SourceRef{Issuer: issuer, Discovery: true}, ParseOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if set, st := waitLoaded(t, r); set.Lookup("k1") == nil {
			t.Fatalf("issuer with trailing slash: %v", st.LastError)
		}
		if p.hitCount("/tenant/.well-known/openid-configuration") != 1 {
			t.Error("discovery URL was not <issuer without trailing slash>/.well-known/openid-configuration")
		}
	})
	for _, tc := range []struct {
		name    string
		mod     func(p *testIdP) (string, string)
		wantErr string
	}{
		{"issuer mismatch", func(p *testIdP) (string, string) { return "https://evil.example", p.url("/jwks") },
			`issuer "https://evil.example" does not match the configured issuer`},
		{"http jwks_uri refused", func(p *testIdP) (string, string) {
			return p.url("/realms/shop"), strings.Replace(p.url("/jwks"), "https://", "http://", 1)
		}, "jwks_uri \"http://"},
		{"relative jwks_uri", func(p *testIdP) (string, string) { return p.url("/realms/shop"), "/jwks" },
			"must be an absolute https URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, issuer := discoveryIdP(t, "/realms/shop", tc.mod)
			f, _ := newTestFetcher(t, p, nil)
			r, err := f.Source(SourceRef{Issuer: issuer, Discovery: true}, ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			set, st := waitLoaded(t, r)
			if set.Len() != 0 || st.Loaded || st.LastError == nil || !strings.Contains(st.LastError.Error(), tc.wantErr) {
				t.Fatalf("state %+v, want not loaded with %q", st, tc.wantErr)
			}
			if p.hitCount("/jwks") != 0 {
				t.Error("the JWKS of a refused discovery document was fetched")
			}
		})
	}
	t.Run("discovery garbage", func(t *testing.T) {
		p := newTestIdP(t, true)
		p.set("/.well-known/openid-configuration", response{body: "[1,2]"})
		f, _ := newTestFetcher(t, p, nil)
		r, _ := f.Source(SourceRef{Issuer: p.url(""), Discovery: true}, ParseOptions{})
		if _, st := waitLoaded(t, r); st.LastError == nil || !strings.Contains(st.LastError.Error(), "not a JSON object") {
			t.Fatalf("LastError = %v", st.LastError)
		}
	})
}

func TestFetcherSharesSourcesAndViews(t *testing.T) {
	p := newTestIdP(t, true)
	doc := jwks(t,
		with(jwkOf(t, &testRSA().PublicKey), "kid", "r1"),
		with(jwkOf(t, &testP256().PublicKey), "kid", "e1", "alg", "ES256"),
	)
	p.set("/jwks", response{body: string(doc)})
	var lastEvent atomic.Pointer[RefreshEvent]
	f, clock := newTestFetcher(t, p, func(o *FetcherOptions) {
		o.Observer = ObserverFunc(func(ev RefreshEvent) { lastEvent.Store(&ev) })
	})
	ref := SourceRef{URI: p.url("/jwks")}
	a, _ := f.Source(ref, ParseOptions{Algorithms: []string{"RS256"}})
	a2, _ := f.Source(ref, ParseOptions{Algorithms: []string{"RS256", "RS256"}})
	b, _ := f.Source(ref, ParseOptions{Algorithms: []string{"ES256"}})
	if a != a2 {
		t.Error("equal options did not share a Remote")
	}
	if a == b {
		t.Error("different allow-lists shared a Remote")
	}
	setA, stA := waitLoaded(t, a)
	setB, _ := waitLoaded(t, b)
	if diff := cmp.Diff([]string{"r1"}, setA.KIDs()); diff != "" {
		t.Errorf("RS256 view (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"e1"}, setB.KIDs()); diff != "" {
		t.Errorf("ES256 view (-want +got):\n%s", diff)
	}
	if len(stA.Skipped) != 1 || stA.Skipped[0].KID != "e1" {
		t.Errorf("RS256 view skipped %v, want e1", stA.Skipped)
	}
	if f.SourceCount() != 1 || p.hitCount("/jwks") != 1 {
		t.Errorf("%d sources, %d fetches; want 1 and 1", f.SourceCount(), p.hitCount("/jwks"))
	}
	// A view created after the first fetch starts loaded, from the shared document.
	c, _ := f.Source(ref, ParseOptions{Algorithms: []string{"ES256", "RS256"}})
	if set, st := c.Current(); set.Len() != 2 || !st.Loaded {
		t.Errorf("late view: %d keys, state %+v", set.Len(), st)
	}
	// An unchanged document keeps the same *Set.
	clock.Advance(time.Hour)
	f.runDue(true)
	if again, _ := a.Current(); again != setA {
		t.Error("an unchanged document replaced the Set")
	}
	// The observer sees the keys skipped by any view, once each.
	ev := lastEvent.Load()
	var skippedKIDs []string
	for _, s := range ev.Skipped {
		skippedKIDs = append(skippedKIDs, s.KID)
	}
	slices.Sort(skippedKIDs)
	if ev.Err != nil || ev.Keys != 2 || !slices.Equal(skippedKIDs, []string{"e1", "r1"}) {
		t.Errorf("observer event: err %v, keys %d, skipped %v; want nil, 2, [e1 r1]", ev.Err, ev.Keys, skippedKIDs)
	}
	// The views are held until here: an unreferenced Remote may be collected (and its view
	// dropped) at any point, which is the lifetime rule under test elsewhere.
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
}

func TestFetcherDropsUnusedSources(t *testing.T) {
	p := newTestIdP(t, true)
	p.set("/jwks", response{body: rsaDoc(t, "k1")})
	p.set("/other", response{body: rsaDoc(t, "k2")})
	f, _ := newTestFetcher(t, p, nil)
	keep, _ := f.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
	func() {
		r, _ := f.Source(SourceRef{URI: p.url("/other")}, ParseOptions{})
		waitLoaded(t, r)
	}()
	if n := f.SourceCount(); n != 2 {
		t.Fatalf("%d sources, want 2", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.SourceCount() != 1 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if n := f.SourceCount(); n != 1 {
		t.Fatalf("after the Remote became unreachable: %d sources, want 1", n)
	}
	// The kept source is intact and a new Source for the dropped URL starts afresh.
	if set, _ := waitLoaded(t, keep); set.Lookup("k1") == nil {
		t.Error("the referenced source lost its keys")
	}
	r, _ := f.Source(SourceRef{URI: p.url("/other")}, ParseOptions{})
	if set, _ := waitLoaded(t, r); set.Lookup("k2") == nil || p.hitCount("/other") != 2 {
		t.Errorf("re-created source: kids %v, %d fetches", set.KIDs(), p.hitCount("/other"))
	}
	runtime.KeepAlive(keep)
}

func TestFetcherConcurrentSourceAndDrop(t *testing.T) {
	// Compiles racing with collection: every Remote handed out must be refreshed (present in
	// its source's views) for as long as it is held. Run with -race.
	p := newTestIdP(t, true)
	p.set("/jwks", response{body: rsaDoc(t, "k1")})
	f, _ := newTestFetcher(t, p, nil)
	ref := SourceRef{URI: p.url("/jwks")}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				r, err := f.Source(ref, ParseOptions{Algorithms: []string{"RS256", []string{"ES256", "PS256"}[g%2]}})
				if err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					runtime.GC()
				}
				r.src.mu.Lock()
				live := false
				for _, wp := range r.src.views {
					live = live || wp.Value() == r
				}
				dropped := r.src.dropped
				r.src.mu.Unlock()
				if !live || dropped {
					t.Errorf("a held Remote is not registered (dropped=%v)", dropped)
					return
				}
				runtime.KeepAlive(r)
			}
		}()
	}
	wg.Wait()
}

func TestFetcherStartRefreshesAndStops(t *testing.T) {
	p := newTestIdP(t, true)
	p.set("/jwks", response{body: rsaDoc(t, "k1")})
	f := NewFetcher(FetcherOptions{
		Client:         p.srv.Client(),
		DefaultRefresh: 30 * time.Millisecond,
		MinRefresh:     10 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Start(ctx)
	}()
	r, err := f.Source(SourceRef{URI: p.url("/jwks")}, ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.hitCount("/jwks") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if hits := p.hitCount("/jwks"); hits < 3 {
		t.Fatalf("background loop: %d fetches in 5s with a 30ms interval", hits)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Start did not return after its context ended")
	}
	if _, err := f.Source(SourceRef{URI: p.url("/other")}, ParseOptions{}); !errors.Is(err, ErrFetcherStopped) {
		t.Errorf("Source after stop: err = %v, want ErrFetcherStopped", err)
	}
	if set, _ := r.Current(); set.Lookup("k1") == nil {
		t.Error("the set is gone after stop")
	}
}

func TestRetryDelay(t *testing.T) {
	f := NewFetcher(FetcherOptions{})
	t.Cleanup(f.cancel)
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: 32 * time.Second, 7: time.Minute, 50: time.Minute} {
		got := f.retryDelay(n)
		if got > want || got < want-want/5 {
			t.Errorf("retryDelay(%d) = %v, want within [%v, %v]", n, got, want-want/5, want)
		}
	}
}
