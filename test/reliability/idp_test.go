package reliability

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// idpMode is how the fake identity provider answers its JWKS URL.
type idpMode int

const (
	// idpUp serves the JWKS document.
	idpUp idpMode = iota
	// idpDown answers 503.
	idpDown
	// idpReset accepts the request and closes the connection without an answer.
	idpReset
	// idpSlow answers after the configured delay (or never, if the client gives up first).
	idpSlow
	// idpGarbage answers 200 with an HTML error page, as a misrouted CDN does.
	idpGarbage
)

// fakeIdP serves a JWKS document over plain HTTP on loopback and can be told to fail in each
// of the ways identity providers fail. It counts the requests it gets.
type fakeIdP struct {
	srv   *httptest.Server
	hits  atomic.Int64
	close chan struct{}

	mu    sync.Mutex
	mode  idpMode
	delay time.Duration
	doc   string
}

func newFakeIdP(t *testing.T, doc string) *fakeIdP {
	t.Helper()
	f := &fakeIdP{doc: doc, close: make(chan struct{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(func() {
		close(f.close) // release stalled handlers, or Close would wait for them
		f.srv.Close()
	})
	return f
}

// url is the JWKS URI.
func (f *fakeIdP) url() string { return f.srv.URL + "/jwks" }

func (f *fakeIdP) set(mode idpMode, delay time.Duration) {
	f.mu.Lock()
	f.mode, f.delay = mode, delay
	f.mu.Unlock()
}

func (f *fakeIdP) setDoc(doc string) {
	f.mu.Lock()
	f.doc = doc
	f.mu.Unlock()
}

func (f *fakeIdP) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/jwks" {
		http.NotFound(w, r)
		return
	}
	f.hits.Add(1)
	f.mu.Lock()
	mode, delay, doc := f.mode, f.delay, f.doc
	f.mu.Unlock()
	switch mode {
	case idpDown:
		http.Error(w, "upstream unavailable", http.StatusServiceUnavailable)
		return
	case idpReset:
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
			}
		}
		return
	case idpGarbage:
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte("<html><body><h1>502 Bad Gateway</h1></body></html>"))
		return
	case idpSlow:
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		case <-f.close:
			return
		}
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write([]byte(doc))
}

// rsaJWK is a public RSA JWK with kid, for RS256.
func rsaJWK(kid string, pub *rsa.PublicKey) map[string]any {
	b64 := base64.RawURLEncoding.EncodeToString
	return map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
}

// jwksPlus returns the idp's public JWKS with further keys appended.
func jwksPlus(t testing.TB, extra ...map[string]any) string {
	t.Helper()
	var doc struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal([]byte(idp().PublicJWKS()), &doc); err != nil {
		t.Fatal(err)
	}
	doc.Keys = append(doc.Keys, extra...)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
