package authz

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
)

// start runs ts on a loopback port until the test ends and returns its base
// URL and a function that stops it and returns Start's result.
func start(t *testing.T, ts *testServer) (string, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ts.Start(ctx) }()
	select {
	case <-ts.Listening():
	case err := <-done:
		t.Fatalf("Start: %v", err)
	}
	stopped := false
	var result error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("server did not stop within 30s")
			}
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	return "http://" + ts.Addr().String(), stop
}

func loopback(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestHeaderBlockTooLarge: a header block over MaxHeaderBytes is answered
// 431 by net/http before the handler, and a large but allowed one is not.
func TestHeaderBlockTooLarge(t *testing.T) {
	ts := newTestServer(t, defaultPolicies(t, nil), func(o *Options) { o.Listener = loopback(t); o.MaxHeaderBytes = 16 << 10 })
	base, _ := start(t, ts)
	send := func(pad int) int {
		req, _ := http.NewRequest("GET", base+"/authz/shop/orders", nil)
		req.Header.Set("Authorization", "Bearer "+token(t, "RS256", nil))
		req.Header.Set("X-Padding", strings.Repeat("p", pad))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := send(8 << 10); got != http.StatusOK {
		t.Errorf("8 KiB of padding: %d, want 200", got)
	}
	// net/http allows MaxHeaderBytes plus 4096 bytes of slack.
	if got := send(64 << 10); got != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("64 KiB of padding: %d, want 431", got)
	}
}

// TestShutdownDrainDelay: after the context ends, /readyz turns 503 while
// requests are still answered for the drain delay; then Start returns nil
// and the port is closed.
func TestShutdownDrainDelay(t *testing.T) {
	ts := newTestServer(t, defaultPolicies(t, nil), func(o *Options) {
		o.Listener = loopback(t)
		o.ShutdownDelay = 300 * time.Millisecond
	})
	base, stop := start(t, ts)
	addr := ts.Addr().String()
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	deadline := time.Now().Add(5 * time.Second)
	for !ts.draining.Load() {
		if time.Now().After(deadline) {
			t.Fatal("server did not start draining")
		}
		time.Sleep(time.Millisecond)
	}
	for path, want := range map[string]int{"/readyz": http.StatusServiceUnavailable, "/authz/shop/orders": http.StatusUnauthorized} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("%s during the drain delay failed: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s while draining: %d, want %d", path, resp.StatusCode, want)
		}
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("Start returned %v after a clean stop", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Start did not return")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("listener still open after shutdown")
	}
}

// TestShutdownWaitsForInFlight: a request whose handler is running when the
// server stops is answered before Start returns. The handler is held in a
// key refresh: the token names an unknown kid of a remote key set whose
// server answers slowly.
func TestShutdownWaitsForInFlight(t *testing.T) {
	var fetches atomic.Int32
	refreshing := make(chan struct{}, 1)
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fetches.Add(1) > 1 {
			refreshing <- struct{}{}
			time.Sleep(700 * time.Millisecond)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, testIssuer().PublicJWKS())
	}))
	defer jwks.Close()
	fetcher := keys.NewFetcher(keys.FetcherOptions{AllowInsecureHTTP: true})
	spec := ordersSpec()
	spec.Issuers[0].JWKS.Inline = ""
	spec.Issuers[0].JWKS.URI = jwks.URL
	p, errs := policy.Compile(spec, policy.CompileOptions{Namespace: "shop", Name: "orders", Fetcher: fetcher, AllowInsecureHTTP: true})
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitKeys(ctx); err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, []*policy.Policy{p}, func(o *Options) { o.Listener = loopback(t) })
	base, stop := start(t, ts)

	tok, err := testIssuer().TokenWithHeader(map[string]any{"alg": "RS256", "kid": "rotated"}, validClaims())
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		status int
		err    error
	}
	answered := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", base+"/authz/shop/orders", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answered <- result{err: err}
			return
		}
		resp.Body.Close()
		answered <- result{status: resp.StatusCode}
	}()
	select {
	case <-refreshing:
	case <-time.After(10 * time.Second):
		t.Fatal("the unknown kid did not trigger a refresh")
	}
	if err := stop(); err != nil {
		t.Errorf("Start returned %v", err)
	}
	select {
	case r := <-answered:
		if r.err != nil || r.status != http.StatusUnauthorized {
			t.Errorf("in-flight request: status %d, error %v; want 401 (key_not_found)", r.status, r.err)
		}
	default:
		t.Fatal("Start returned before the in-flight request was answered")
	}
}

func TestNeedLeaderElection(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	if ts.NeedLeaderElection() {
		t.Error("every replica must serve: NeedLeaderElection() = true")
	}
}

func TestNewServerChecksOptions(t *testing.T) {
	if _, err := NewServer(Options{}); err == nil {
		t.Error("NewServer without a Store succeeded")
	}
	if _, err := NewServer(Options{Store: store.New(), TLSCertFile: "x"}); err == nil {
		t.Error("NewServer with a cert but no key succeeded")
	}
	if _, err := NewServer(Options{Store: store.New(), TLSCertFile: "/nonexistent/c", TLSKeyFile: "/nonexistent/k"}); err == nil {
		t.Error("NewServer with missing TLS files succeeded")
	}
	reg := prometheus.NewRegistry()
	if _, err := NewServer(Options{Store: store.New(), Registry: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(Options{Store: store.New(), Registry: reg}); err == nil {
		t.Error("registering the metrics twice in one registry succeeded")
	}
}

// writeCert writes a self-signed certificate for 127.0.0.1 and returns its
// serial number.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "claimguard-test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Write to temporary names and rename: a half-written pair must never
	// be read.
	for _, f := range []struct {
		path  string
		block *pem.Block
	}{{keyFile, &pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}}, {certFile, &pem.Block{Type: "CERTIFICATE", Bytes: der}}} {
		tmp := f.path + ".tmp"
		if err := os.WriteFile(tmp, pem.EncodeToMemory(f.block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, f.path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTLSAndRotation: with TLS files the server speaks HTTPS only over
// HTTP/1.1, and a rotated certificate is served without a restart.
func TestTLSAndRotation(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	writeCert(t, certFile, keyFile, 1)
	ts := newTestServer(t, defaultPolicies(t, nil), func(o *Options) {
		o.Listener = loopback(t)
		o.TLSCertFile, o.TLSKeyFile = certFile, keyFile
	})
	_, _ = start(t, ts)
	addr := ts.Addr().String()
	serial := func() (int64, string) {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // a self-signed test certificate
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return st.PeerCertificates[0].SerialNumber.Int64(), st.NegotiatedProtocol
	}
	if s, proto := serial(); s != 1 || proto == "h2" {
		t.Fatalf("serial %d, protocol %q; want 1 and not h2", s, proto)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // test certificate
	resp, err := client.Get("https://" + addr + "/authz/shop/orders")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("status over TLS %d, want 401", resp.StatusCode)
	}

	writeCert(t, certFile, keyFile, 2)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s, _ := serial(); s == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("rotated certificate not served within 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetrics: decisions are counted by policy, outcome and reason; unknown
// policies under empty labels; series of a removed policy disappear; the
// cache, snapshot, reload and key metrics are exported.
func TestMetrics(t *testing.T) {
	cache := policy.NewCache(100)
	ts := newTestServer(t, defaultPolicies(t, cache), func(o *Options) { o.Cache = cache })
	good := "Authorization: Bearer " + token(t, "RS256", nil)
	for i := 0; i < 3; i++ {
		ts.do(request("GET", "/authz/shop/orders", good))
	}
	ts.do(request("GET", "/authz/shop/orders"))
	ts.do(request("GET", "/authz/shop/orders", "X-Original-URL: http://h/public/x"))
	ts.do(request("GET", "/authz/shop/audit"))
	for _, p := range []string{"/authz/evil/x1", "/authz/evil/x2", "/authz/%2e%2e/x", "/authz/a//b"} {
		ts.do(request("GET", p))
	}
	dec := func(ns, name, outcome, reason string) float64 {
		return testutil.ToFloat64(ts.metrics.decisions.WithLabelValues(ns, name, outcome, reason))
	}
	tests := []struct {
		ns, name, outcome, reason string
		want                      float64
	}{
		{"shop", "orders", "allow", "", 3},
		{"shop", "orders", "deny", "token_missing", 1},
		{"shop", "orders", "public", "", 1},
		{"shop", "audit", "audit", "token_missing", 1},
		{"", "", "deny", "policy_not_found", 4},
	}
	for _, tt := range tests {
		if got := dec(tt.ns, tt.name, tt.outcome, tt.reason); got != tt.want {
			t.Errorf("decisions{%s,%s,%s,%s} = %v, want %v", tt.ns, tt.name, tt.outcome, tt.reason, got, tt.want)
		}
	}
	// Attacker-chosen names never become label values.
	n, err := testutil.GatherAndCount(ts.reg, "claimguard_authz_decisions_total")
	if err != nil {
		t.Fatal(err)
	}
	// shop/orders: allow, public, deny/token_missing; shop/audit: allow,
	// public, audit; shop/cookie: allow, public; unknown: 1.
	if n != 9 {
		t.Errorf("%d decision series, want 9", n)
	}
	if got := testutil.CollectAndCount(ts.metrics.duration); got != 1 {
		t.Errorf("duration histogram count %d", got)
	}
	if c, _ := testutil.GatherAndCount(ts.reg, "claimguard_authz_duration_seconds"); c != 1 {
		t.Errorf("duration histogram not exported")
	}
	if got := testutil.ToFloat64(ts.metrics.policies.WithLabelValues("compiled")); got != 3 {
		t.Errorf("snapshot policies %v, want 3", got)
	}
	if err := testutil.GatherAndCompare(ts.reg, strings.NewReader(fmt.Sprintf(`
# HELP claimguard_cache_hits_total Verified-token cache hits.
# TYPE claimguard_cache_hits_total counter
claimguard_cache_hits_total %d
# HELP claimguard_cache_entries Entries in the verified-token cache.
# TYPE claimguard_cache_entries gauge
claimguard_cache_entries %d
`, cache.Stats().Hits, cache.Stats().Size)), "claimguard_cache_hits_total", "claimguard_cache_entries"); err != nil {
		t.Error(err)
	}
	if cache.Stats().Hits < 2 {
		t.Errorf("cache hits %d, want at least 2 (same token three times)", cache.Stats().Hits)
	}

	// Remove shop/audit and shop/cookie: their series go.
	ts.store.Publish(store.NewSnapshot(compileAll(t, cache, namedSpec{"shop", "orders", ordersSpec()}), nil))
	if n, _ := testutil.GatherAndCount(ts.reg, "claimguard_authz_decisions_total"); n != 4 {
		t.Errorf("%d decision series after removing two policies, want 4", n)
	}

	ts.metrics.ObserveReload(nil)
	ts.metrics.ObserveReload(errors.New("bad file"))
	if got := testutil.ToFloat64(ts.metrics.lastReloadOK); got != 0 {
		t.Errorf("last reload success %v after a failure", got)
	}
	if got := testutil.ToFloat64(ts.metrics.reloads.WithLabelValues("failure")); got != 1 {
		t.Errorf("reload failures %v", got)
	}

	obs := ts.metrics.KeysObserver(ts.logs.logger())
	src := "https://idp.example.com/jwks"
	obs.ObserveRefresh(keys.RefreshEvent{Source: src, Keys: 2, Skipped: []keys.Skipped{{Index: 2, KID: "enc", Reason: `use "enc"`}}})
	obs.ObserveRefresh(keys.RefreshEvent{Source: src, Err: errors.New("connection refused"), Stale: true})
	for _, c := range []struct {
		got, want float64
		what      string
	}{
		{testutil.ToFloat64(ts.metrics.refreshes.WithLabelValues(src, "success")), 1, "successful refreshes"},
		{testutil.ToFloat64(ts.metrics.refreshes.WithLabelValues(src, "failure")), 1, "failed refreshes"},
		{testutil.ToFloat64(ts.metrics.keysLoaded.WithLabelValues(src)), 2, "loaded keys"},
		{testutil.ToFloat64(ts.metrics.keysSkipped.WithLabelValues(src)), 1, "skipped keys"},
		{testutil.ToFloat64(ts.metrics.keysStale.WithLabelValues(src)), 1, "stale"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	if logs := strings.Join(ts.logs.all(), "\n"); !strings.Contains(logs, "connection refused") {
		t.Errorf("a failed refresh is not logged:\n%s", logs)
	}

	// /metrics on the auth listener serves the same registry.
	w := ts.do(request("GET", "/metrics"))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `claimguard_authz_decisions_total{namespace="shop",outcome="allow",policy="orders",reason=""} 3`) {
		t.Errorf("/metrics: %d\n%s", w.Code, w.Body.String())
	}
}
