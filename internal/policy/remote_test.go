package policy

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/keys"
)

// jwksServer serves a key set that the test can swap, and counts fetches.
type jwksServer struct {
	*httptest.Server
	mu     sync.Mutex
	doc    string
	status int
	hits   atomic.Int32
}

func newJWKSServer(t *testing.T, doc string) *jwksServer {
	s := &jwksServer{doc: doc, status: 200}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		doc, status := s.doc, s.status
		s.mu.Unlock()
		if r.URL.Path == "/.well-known/openid-configuration" {
			w.Write([]byte(`{"issuer":"` + s.URL + `","jwks_uri":"` + s.URL + `/certs"}`))
			return
		}
		w.WriteHeader(status)
		w.Write([]byte(doc))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(doc string, status int) {
	s.mu.Lock()
	s.doc, s.status = doc, status
	s.mu.Unlock()
}

func newTestFetcher(t *testing.T) *keys.Fetcher {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := keys.NewFetcher(keys.FetcherOptions{AllowInsecureHTTP: true, FetchTimeout: 2 * time.Second, UnknownKIDInterval: time.Hour})
	go f.Start(ctx)
	return f
}

func remoteSpec(issuer string, src authv1alpha1.JWKSSource) *authv1alpha1.JWTPolicySpec {
	spec := baseSpec()
	spec.Issuers = []authv1alpha1.Issuer{{Issuer: issuer, Audiences: []string{testAudience}, JWKS: src}}
	return spec
}

func waitKeys(t *testing.T, p *Policy) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.WaitKeys(ctx); err != nil {
		t.Fatalf("WaitKeys: %v", err)
	}
}

func TestRemoteURIAndKeyRotation(t *testing.T) {
	k := fixtures()
	srv := newJWKSServer(t, jwks(rsaJWK("rsa1", "", &k.rsa.PublicKey)))
	opts := testOptions()
	opts.Fetcher, opts.AllowInsecureHTTP = newTestFetcher(t), true
	p := mustCompile(t, remoteSpec(testIssuer, authv1alpha1.JWKSSource{URI: srv.URL + "/certs"}), opts)
	waitKeys(t, p)
	if !p.KeysReady() {
		t.Fatalf("KeysReady() = false: %+v", p.KeyStatus())
	}
	if d := p.Decide(bearer(k.signer("RS256").token(t, nil, claims()))); !d.Allowed {
		t.Fatalf("decision = %+v", d)
	}
	// The issuer rotates in a new key: a token with the new kid triggers
	// one refresh and is then accepted.
	srv.set(jwks(rsaJWK("rsa1", "", &k.rsa.PublicKey), ecJWK("ec-new", &k.ec.PublicKey)), 200)
	before := srv.hits.Load()
	if d := p.Decide(bearer(signer{"ES256", k.ec, "ec-new"}.token(t, nil, claims()))); !d.Allowed {
		t.Fatalf("rotated key: %+v", d)
	}
	if srv.hits.Load() != before+1 {
		t.Errorf("rotation cost %d fetches, want 1", srv.hits.Load()-before)
	}
	// An unknown kid within the rate limit costs no fetch and is key_not_found.
	before = srv.hits.Load()
	for i := 0; i < 5; i++ {
		if d := p.Decide(bearer(signer{"ES256", k.ec, "made-up"}.token(t, nil, claims()))); d.Reason != KeyNotFound {
			t.Fatalf("unknown kid: %+v", d)
		}
	}
	if srv.hits.Load() != before {
		t.Errorf("unknown kids caused %d fetches within the rate limit", srv.hits.Load()-before)
	}
	st := p.KeyStatus()
	if len(st) != 1 || st[0].Source != "uri" || !st[0].Loaded || st[0].LastRefresh.IsZero() || len(st[0].KIDs) != 2 {
		t.Errorf("KeyStatus = %+v", st)
	}
}

func TestRemoteNeverLoadedSaysWhy(t *testing.T) {
	srv := newJWKSServer(t, "oops")
	srv.set("internal error", 500)
	opts := testOptions()
	opts.Fetcher, opts.AllowInsecureHTTP = newTestFetcher(t), true
	p := mustCompile(t, remoteSpec(testIssuer, authv1alpha1.JWKSSource{URI: srv.URL + "/certs"}), opts)
	waitKeys(t, p)
	d := p.Decide(bearer(fixtures().signer("RS256").token(t, nil, claims())))
	if d.Reason != KeysUnavailable || !strings.Contains(d.Description, "500") {
		t.Errorf("decision = %+v, want keys_unavailable naming the HTTP status", d)
	}
	if p.KeysReady() {
		t.Error("KeysReady() = true")
	}
	if st := p.KeyStatus(); st[0].Loaded || st[0].Err == nil {
		t.Errorf("KeyStatus = %+v", st)
	}
}

func TestRemoteDiscovery(t *testing.T) {
	k := fixtures()
	srv := newJWKSServer(t, jwks(ecJWK("ec1", &k.ec.PublicKey)))
	opts := testOptions()
	opts.Fetcher, opts.AllowInsecureHTTP = newTestFetcher(t), true
	p := mustCompile(t, remoteSpec(srv.URL, authv1alpha1.JWKSSource{Discovery: true}), opts)
	waitKeys(t, p)
	d := p.Decide(bearer(k.signer("ES256").token(t, nil, withClaims(func(m map[string]any) { m["iss"] = srv.URL }))))
	if !d.Allowed {
		t.Errorf("decision = %+v (status %+v)", d, p.KeyStatus())
	}
	if st := p.KeyStatus(); st[0].Source != "discovery" {
		t.Errorf("source = %q", st[0].Source)
	}
}

func TestRemoteRequiresHTTPS(t *testing.T) {
	opts := testOptions()
	opts.Fetcher = newTestFetcher(t)
	_, errs := Compile(remoteSpec(testIssuer, authv1alpha1.JWKSSource{URI: "http://127.0.0.1:1/certs"}), opts)
	if len(errs) != 1 || errs[0].Field != "spec.issuers[0].jwks.uri" || !strings.Contains(errs[0].Detail, "https") {
		t.Errorf("errors = %v", errs)
	}
}
