package reliability

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// fetchTimeout is keys.DefaultFetchTimeout, the bound of one key fetch, which serve uses: no
// request may wait longer for keys. slack covers scheduling on a shared 2-core machine.
const (
	fetchTimeout = 5 * time.Second
	slack        = 1500 * time.Millisecond
)

// jwksServe starts serve on one policy, shop/orders, whose keys come from f. The token cache
// is off, so every request checks its signature against the key set as it is now (a cache
// would answer repeated tokens without looking at the keys).
func jwksServe(t *testing.T, f *fakeIdP) *serveProc {
	t.Helper()
	return startServe(t, policyDoc("shop", "orders", "uri: "+f.url(), ""),
		"--allow-insecure-jwks-http", "--cache-size", "0")
}

func refreshes(t *testing.T, s *serveProc, source, result string) float64 {
	v, _ := metric(s.metrics(t), "claimguard_keys_refresh_total", "source", source, "result", result)
	return v
}

// TestServeJWKSUnavailableAtStart starts serve while the identity provider fails in each way
// it can: serve is not ready, every request with a token is denied keys_unavailable with the
// cause in error_description (not a signature error), the refresh metric counts failures, no
// request waits longer than one fetch timeout, and once the provider answers the keys load
// without a restart.
func TestServeJWKSUnavailableAtStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		mode  idpMode
		delay time.Duration
		cause string // in error_description once the first fetch failed
	}{
		{"HTTP 503", idpDown, 0, "HTTP 503"},
		{"connection closed", idpReset, 0, "EOF"},
		{"HTML instead of a JWKS", idpGarbage, 0, "not a JWKS"},
		{"slower than the fetch timeout", idpSlow, time.Minute, "timed out after 5s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeIdP(t, idp().PublicJWKS())
			f.set(tc.mode, tc.delay)
			s := jwksServe(t, f)
			mix := newTokenMix(t, "ES256")

			// Requests start at once, during the first fetch, and go on until its failure is
			// known: none may wait for the fetch.
			var slowest time.Duration
			var last answer
			waitFor(t, fetchTimeout+10*time.Second, "the cause in error_description", func() error {
				for _, tok := range []string{mix.valid, mix.expired, mix.forged, mix.noScope} {
					a := mustAsk(t, s.base, "shop", "orders", tok)
					slowest = max(slowest, a.latency)
					if a.status != http.StatusUnauthorized || a.reason != "keys_unavailable" {
						t.Fatalf("keys never loaded: got %s, want 401 keys_unavailable", a)
					}
					last = a
				}
				if !strings.Contains(last.www, tc.cause) {
					return fmt.Errorf("WWW-Authenticate %q does not say %q yet", last.www, tc.cause)
				}
				return nil
			})
			if slowest > slack {
				t.Errorf("a request waited %s for keys that never loaded; none should wait", slowest)
			}
			if a := mustAsk(t, s.base, "shop", "orders", ""); a.reason != "token_missing" {
				t.Errorf("no token: %s, want token_missing (the key set is not consulted)", a)
			}
			code, body, _ := bodyOf(s.base + "/readyz")
			if code != http.StatusServiceUnavailable || !strings.Contains(body, "shop/orders") {
				t.Errorf("/readyz while keys never loaded: %d %q, want 503 naming shop/orders", code, body)
			}
			m := s.metrics(t)
			if v, _ := metric(m, "claimguard_keys_refresh_total", "source", f.url(), "result", "failure"); v < 1 {
				t.Errorf("claimguard_keys_refresh_total{result=failure} = %v, want >= 1", v)
			}
			if v, _ := metric(m, "claimguard_authz_decisions_total", "namespace", "shop", "policy", "orders", "reason", "keys_unavailable"); v < 4 {
				t.Errorf("decisions with reason keys_unavailable = %v, want >= 4", v)
			}
			if !strings.Contains(s.logs.String(), "Refreshing a remote key set failed") {
				t.Error("no log line says the refresh failed")
			}

			// The provider recovers: the retry (backoff from 1s) loads the keys.
			f.set(idpUp, 0)
			took := waitFor(t, 30*time.Second, "ready after the provider recovered", func() error {
				if c := statusOf(s.base + "/readyz"); c != http.StatusOK {
					return fmt.Errorf("/readyz %d", c)
				}
				return nil
			})
			t.Logf("%s: slowest request during the outage %s; ready %s after the provider recovered",
				tc.name, slowest.Round(time.Millisecond), took.Round(100*time.Millisecond))
			for _, p := range mix.probes("ES256") {
				if a := mustAsk(t, s.base, "shop", "orders", p.token); a.status != p.want || (p.reason != "" && a.reason != p.reason) {
					t.Errorf("after recovery, %s: got %s, want %d %s", p.name, a, p.want, p.reason)
				}
			}
			noSecretsLogged(t, s.logs.String(), mix.valid, mix.forged, idp().PublicJWKS())
		})
	}
}

// TestServeJWKSOutageLater takes the identity provider away while traffic flows: tokens keep
// being verified with the keys loaded before (stale-while-error), the metrics say the set is
// stale and count the failed refreshes, and when the provider is back the set is fresh again.
func TestServeJWKSOutageLater(t *testing.T) {
	t.Parallel()
	f := newFakeIdP(t, idp().PublicJWKS())
	s := jwksServe(t, f)
	waitFor(t, 20*time.Second, "ready", func() error {
		if c := statusOf(s.base + "/readyz"); c != http.StatusOK {
			return fmt.Errorf("/readyz %d", c)
		}
		return nil
	})
	url := s.base + "/authz/shop/orders"
	probes := append(newTokenMix(t, "ES256").probes("ES256"), newTokenMix(t, "RS256").probes("RS256")...)
	tr := startTraffic(t, 2, 10*time.Millisecond, []target{{"serve", url}}, probes)

	var lastTrigger time.Time
	for _, mode := range []idpMode{idpDown, idpGarbage} {
		f.set(mode, 0)
		// Unknown kids refresh at most once per interval (10s): wait for the next one.
		time.Sleep(time.Until(lastTrigger.Add(10*time.Second + 200*time.Millisecond)))
		lastTrigger = time.Now()
		// A token naming a kid the set does not have makes serve look at once (a rotation
		// would); otherwise the failure would show at the next scheduled refresh.
		unknown, err := forger().TokenWithHeader(map[string]any{"alg": "ES256", "kid": fmt.Sprintf("rotated-%d", mode)}, claimsFor("carol"))
		if err != nil {
			t.Fatal(err)
		}
		if a := mustAsk(t, s.base, "shop", "orders", unknown); a.status != http.StatusUnauthorized || a.reason != "key_not_found" {
			t.Errorf("unknown kid during the outage: %s, want 401 key_not_found", a)
		}
		failures := 0.0
		waitFor(t, 15*time.Second, "the stale gauge", func() error {
			m := s.metrics(t)
			stale, _ := metric(m, "claimguard_keys_stale", "source", f.url())
			failures, _ = metric(m, "claimguard_keys_refresh_total", "source", f.url(), "result", "failure")
			if stale != 1 || failures < 1 {
				return fmt.Errorf("claimguard_keys_stale %v, failures %v", stale, failures)
			}
			return nil
		})
		// The outage goes on for a few retries, traffic still flowing.
		time.Sleep(4 * time.Second)
		if code := statusOf(s.base + "/readyz"); code != http.StatusOK {
			t.Errorf("/readyz %d during an outage with keys loaded before; a stale set still serves", code)
		}
		if after := refreshes(t, s, f.url(), "failure"); after <= failures {
			t.Errorf("no further failed refresh in 4s of outage (failures %v -> %v): the retries stopped", failures, after)
		}

		f.set(idpUp, 0)
		took := waitFor(t, 30*time.Second, "fresh again", func() error {
			if stale, _ := metric(s.metrics(t), "claimguard_keys_stale", "source", f.url()); stale != 0 {
				return fmt.Errorf("claimguard_keys_stale %v", stale)
			}
			return nil
		})
		t.Logf("outage %d: the set was fresh again %s after the provider recovered", mode, took.Round(100*time.Millisecond))
	}
	tr.Stop()
	r := tr.expectClean(t, 200)
	if r.maxLatency > slack {
		t.Errorf("the slowest answer took %s during the outages; requests with known keys never wait", r.maxLatency)
	}
}

// TestServeJWKSSlowRefresh: once keys are loaded, a provider that stalls costs a request with
// an unknown kid at most one fetch timeout, and costs nothing to requests whose key is known.
func TestServeJWKSSlowRefresh(t *testing.T) {
	t.Parallel()
	f := newFakeIdP(t, idp().PublicJWKS())
	s := jwksServe(t, f)
	waitFor(t, 20*time.Second, "ready", func() error {
		if c := statusOf(s.base + "/readyz"); c != http.StatusOK {
			return fmt.Errorf("/readyz %d", c)
		}
		return nil
	})
	mix := newTokenMix(t, "RS256")
	f.set(idpSlow, time.Minute)
	unknown, err := forger().TokenWithHeader(map[string]any{"alg": "RS256", "kid": "next-key"}, claimsFor("carol"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var stalled answer
	wg.Add(1)
	go func() {
		defer wg.Done()
		stalled, _ = ask(s.base, "shop", "orders", unknown)
	}()
	// While that request waits for the stalled fetch, known keys keep answering at once.
	var slowest time.Duration
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		a := mustAsk(t, s.base, "shop", "orders", mix.valid)
		if a.status != http.StatusOK {
			t.Fatalf("valid token during a stalled refresh: %s", a)
		}
		slowest = max(slowest, a.latency)
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if stalled.status != http.StatusUnauthorized || stalled.reason != "key_not_found" {
		t.Errorf("unknown kid with a stalled provider: %s, want 401 key_not_found", stalled)
	}
	if stalled.latency > fetchTimeout+slack {
		t.Errorf("the unknown-kid request waited %s, more than the fetch timeout %s", stalled.latency, fetchTimeout)
	}
	if slowest > slack {
		t.Errorf("a request with a known key waited %s during the stalled refresh", slowest)
	}
	t.Logf("stalled provider: unknown kid answered in %s (bound %s); known keys: slowest %s",
		stalled.latency.Round(time.Millisecond), fetchTimeout, slowest.Round(time.Millisecond))
}

// TestServeJWKSRotationAndFlood: a key published by the provider is used on the first token
// that names it (one fetch), and a flood of tokens with made-up kids costs the provider at
// most one fetch per unknown-kid interval (10s), however many requests carry them.
func TestServeJWKSRotationAndFlood(t *testing.T) {
	t.Parallel()
	const unknownKIDInterval = 10 * time.Second // keys.DefaultUnknownKIDInterval
	f := newFakeIdP(t, idp().PublicJWKS())
	s := jwksServe(t, f)
	waitFor(t, 20*time.Second, "ready", func() error {
		if c := statusOf(s.base + "/readyz"); c != http.StatusOK {
			return fmt.Errorf("/readyz %d", c)
		}
		return nil
	})

	// Rotation: the provider publishes a new key; its first token is allowed.
	f.setDoc(jwksPlus(t, rsaJWK("rot2", &forger().RSA.PublicKey)))
	rotated, err := forger().TokenWithHeader(map[string]any{"alg": "RS256", "kid": "rot2"}, claimsFor("carol"))
	if err != nil {
		t.Fatal(err)
	}
	before := f.hits.Load()
	if a := mustAsk(t, s.base, "shop", "orders", rotated); a.status != http.StatusOK || a.subject != "carol" {
		t.Errorf("first token with the rotated key: %s (subject %q), want 200 for carol", a, a.subject)
	}
	if n := f.hits.Load() - before; n != 1 {
		t.Errorf("the rotation cost %d fetches, want 1", n)
	}
	rotatedAt := time.Now()

	// Flood: every request names a new kid.
	const flood = 12 * time.Second
	before = f.hits.Load()
	var mu sync.Mutex
	sent, wrong := 0, map[string]int{}
	var slowest time.Duration
	var wg sync.WaitGroup
	stop := time.Now().Add(flood)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				kid := make([]byte, 6)
				_, _ = rand.Read(kid)
				tok, err := forger().TokenWithHeader(map[string]any{"alg": "ES256", "kid": hex.EncodeToString(kid)}, claimsFor("mallory"))
				if err != nil {
					t.Error(err)
					return
				}
				a, err := ask(s.base, "shop", "orders", tok)
				mu.Lock()
				sent++
				switch {
				case err != nil:
					wrong["error: "+shortErr(err)]++
				case a.status != http.StatusUnauthorized || a.reason != "key_not_found":
					wrong[a.String()]++
				}
				slowest = max(slowest, a.latency)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	fetches := f.hits.Load() - before
	// The interval started with the rotation's fetch: the flood may fetch at most once per
	// interval after it.
	allowed := int64(time.Since(rotatedAt) / unknownKIDInterval)
	if fetches > allowed || fetches < 1 {
		t.Errorf("%d requests with unknown kids over %s caused %d fetches, want between 1 and %d (one per %s)",
			sent, flood, fetches, allowed, unknownKIDInterval)
	}
	if len(wrong) > 0 {
		t.Errorf("unknown kids answered other than 401 key_not_found: %v", wrong)
	}
	if slowest > slack {
		t.Errorf("a request with an unknown kid waited %s (the provider answers at once)", slowest)
	}
	t.Logf("flood: %d requests with unknown kids in %s, %d fetches, slowest %s", sent, flood, fetches, slowest.Round(time.Millisecond))
	// The rotated key is still in force after the flood.
	if a := mustAsk(t, s.base, "shop", "orders", rotated); a.status != http.StatusOK {
		t.Errorf("rotated key after the flood: %s", a)
	}
}
