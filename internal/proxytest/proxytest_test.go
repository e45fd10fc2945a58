package proxytest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// authStub is a scripted auth endpoint that records what the proxy sent. It
// stands in for claimguard only to pin down how each real proxy treats the
// auth call and its answer; claimguard's own tests run the real server.
type authStub struct {
	mu     sync.Mutex
	last   http.Header
	status int
}

func (a *authStub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.last = r.Header.Clone()
	status := a.status
	a.mu.Unlock()
	switch status {
	case http.StatusOK:
		w.Header().Set("X-Auth-Subject", "alice")
	case http.StatusUnauthorized:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="expired"`)
	case http.StatusForbidden:
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", error_description="claim"`)
	}
	w.WriteHeader(status)
}

func (a *authStub) set(status int) {
	a.mu.Lock()
	a.status = status
	a.mu.Unlock()
}

func (a *authStub) lastHeader() http.Header {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

func TestProxies(t *testing.T) {
	up, err := StartUpstream()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	stub := &authStub{status: http.StatusOK}
	auth := httptest.NewServer(stub)
	defer auth.Close()

	for _, tc := range []struct {
		name  string
		start func(Config) (*Proxy, error)
		// What the proxy sends to identify the original request.
		originalHeader string
		// Whether WWW-Authenticate of a 403 reaches the client.
		relays403Header bool
	}{
		{"nginx", StartNginx, "X-Original-Url", false},
		{"caddy", StartCaddy, "X-Forwarded-Uri", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := tc.start(Config{AuthURL: auth.URL + "/authz/shop/orders", Upstream: up.Addr, ResponseHeaders: []string{"X-Auth-Subject"}})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Stop()

			stub.set(http.StatusOK)
			resp, err := http.Get(p.URL + "/orders/1?x=y")
			if err != nil {
				t.Fatal(err)
			}
			var echo Echo
			if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil {
				t.Fatalf("allowed request did not reach the upstream: %v\n%s", err, p.Logs())
			}
			resp.Body.Close()
			if got := strings.Join(echo.Header["X-Auth-Subject"], ","); got != "alice" {
				t.Errorf("upstream got X-Auth-Subject %q, want alice", got)
			}
			if got := stub.lastHeader().Get(tc.originalHeader); !strings.Contains(got, "/orders/1?x=y") {
				t.Errorf("auth call %s = %q, want the original URI", tc.originalHeader, got)
			}

			stub.set(http.StatusUnauthorized)
			resp, err = http.Get(p.URL + "/orders/1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
				t.Errorf("401: got %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}

			stub.set(http.StatusForbidden)
			resp, err = http.Get(p.URL + "/orders/1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("403: got %d", resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate") != ""; got != tc.relays403Header {
				t.Errorf("403 WWW-Authenticate relayed = %v, want %v", got, tc.relays403Header)
			}
		})
	}
}

// TestNginxAuthDown pins down the failure mode the docs describe: when the
// auth service cannot be reached, nginx answers 500 and nothing reaches the
// upstream.
func TestNginxAuthDown(t *testing.T) {
	up, err := StartUpstream()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	dead, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartNginx(Config{AuthURL: "http://" + dead + "/authz/a/b", Upstream: up.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	resp, err := http.Get(p.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || up.Hits() != 0 {
		t.Errorf("auth down: got %d with %d upstream hits, want 500 and none", resp.StatusCode, up.Hits())
	}
}

// TestNginxReload: nginx without an auth URL passes traffic straight through;
// a reload with one turns the check on, and another turns it off again.
func TestNginxReload(t *testing.T) {
	up, err := StartUpstream()
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	stub := &authStub{status: http.StatusUnauthorized}
	auth := httptest.NewServer(stub)
	defer auth.Close()
	p, err := StartNginx(Config{Upstream: up.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	status := func() int {
		resp, err := http.Get(p.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitStatus := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for status() != want {
			if time.Now().After(deadline) {
				t.Fatalf("status did not become %d after reload:\n%s", want, p.Logs())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitStatus(http.StatusOK)
	if err := p.Reload(Config{AuthURL: auth.URL + "/authz/a/b", Upstream: up.Addr}); err != nil {
		t.Fatal(err)
	}
	waitStatus(http.StatusUnauthorized)
	if err := p.Reload(Config{Upstream: up.Addr}); err != nil {
		t.Fatal(err)
	}
	waitStatus(http.StatusOK)
	if err := p.Reload(Config{AuthURL: "http://127.0.0.1:1/x", Upstream: "not a host port ;"}); err == nil {
		t.Error("a configuration nginx -t refuses was reloaded")
	}
}
