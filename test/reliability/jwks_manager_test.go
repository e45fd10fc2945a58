package reliability

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// managerKeysGrace is how long the manager's readiness waits for remote key sets after its
// first snapshot (cli.keysGrace, two fetch timeouts) before it reports ready anyway, so that
// one identity provider that is down cannot take forward-auth away from every other policy.
const managerKeysGrace = 2 * fetchTimeout

// TestManagerJWKSOutages runs the manager with a policy whose identity provider is down from
// the start, then recovers, then fails again:
//   - down at start: the probe listener's /readyz is 503 for the keys grace and then 200 (a
//     bounded wait), the auth listener's own /readyz stays 503 while the set has never
//     loaded, every request with a token is denied keys_unavailable naming the cause, the
//     KeysLoaded condition is False/KeysUnavailable with the cause, and
//     claimguard_keys_refresh_total counts the failures;
//   - the provider recovers: KeysLoaded turns True without a restart;
//   - down later: tokens keep being allowed with the loaded keys, KeysLoaded is True/KeysStale
//     and claimguard_keys_stale is 1; after recovery KeysLoaded/KeysLoaded again.
func TestManagerJWKSOutages(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	f := newFakeIdP(t, idp().PublicJWKS())
	f.set(idpDown, 0)
	createNamespace(t, env.Client, "shop")
	createPolicy(t, env.Client, policyDoc("shop", "orders", "uri: "+f.url(), ""))

	m := startManager(t, "manager", env.Kubeconfig, "--leader-elect=false")
	start := time.Now()
	mix := newTokenMix(t, "ES256")

	// Readiness: failing first (controller-runtime's probe handler answers 500), then 200 once
	// the grace has passed; the auth listener's /readyz (which the manager does not use as
	// its probe) stays 503.
	var sawNotReady bool
	var readyAfter time.Duration
	waitFor(t, 60*time.Second, "probe /readyz 200 after the keys grace", func() error {
		if !m.running() {
			t.Fatalf("manager exited: %v", m.err)
		}
		switch code := statusOf(m.probes + "/readyz"); code {
		case 0: // not listening yet
		case http.StatusOK:
			readyAfter = time.Since(start)
			return nil
		default:
			sawNotReady = true
		}
		return fmt.Errorf("not ready yet")
	})
	if !sawNotReady {
		t.Error("the probe /readyz never failed while no key set had loaded")
	}
	if code, body, _ := bodyOf(m.auth + "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shop/orders") {
		t.Errorf("auth listener /readyz with keys never loaded: %d %q, want 503 naming shop/orders", code, body)
	}
	t.Logf("probe /readyz turned 200 %s after the start (keys grace %s after the first snapshot)", readyAfter.Round(100*time.Millisecond), managerKeysGrace)

	for _, tok := range []string{mix.valid, mix.expired, mix.forged, mix.noScope} {
		a := mustAsk(t, m.auth, "shop", "orders", tok)
		if a.status != http.StatusUnauthorized || a.reason != "keys_unavailable" || !strings.Contains(a.www, "HTTP 503") {
			t.Errorf("keys never loaded: got %s (%q), want 401 keys_unavailable saying HTTP 503", a, a.www)
		}
	}
	waitFor(t, 30*time.Second, "KeysLoaded=False naming the cause", func() error {
		return conditionIs(env.Client, "shop", "orders", authv1alpha1.ConditionKeysLoaded, metav1.ConditionFalse,
			authv1alpha1.ReasonKeysUnavailable, "HTTP 503", f.url())
	})
	if err := conditionIs(env.Client, "shop", "orders", authv1alpha1.ConditionReady, metav1.ConditionFalse, ""); err != nil {
		t.Error(err)
	}
	if v, _ := metric(m.metrics(t), "claimguard_keys_refresh_total", "source", f.url(), "result", "failure"); v < 1 {
		t.Errorf("claimguard_keys_refresh_total{result=failure} = %v, want >= 1", v)
	}

	// Recovery without a restart.
	f.set(idpUp, 0)
	took := waitFor(t, 30*time.Second, "KeysLoaded=True after recovery", func() error {
		return conditionIs(env.Client, "shop", "orders", authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysLoaded)
	})
	t.Logf("KeysLoaded=True %s after the provider recovered", took.Round(100*time.Millisecond))
	if c := statusOf(m.auth + "/readyz"); c != http.StatusOK {
		t.Errorf("auth listener /readyz %d after the keys loaded", c)
	}
	for _, p := range mix.probes("ES256") {
		if a := mustAsk(t, m.auth, "shop", "orders", p.token); a.status != p.want || (p.reason != "" && a.reason != p.reason) {
			t.Errorf("after recovery, %s: got %s, want %d %s", p.name, a, p.want, p.reason)
		}
	}

	// Down later: the loaded keys keep serving; status and metrics say the set is stale.
	f.set(idpDown, 0)
	tr := startTraffic(t, 1, 10*time.Millisecond, []target{{"manager", m.authURL("shop", "orders")}}, mix.probes("ES256"))
	unknown, err := forger().TokenWithHeader(map[string]any{"alg": "ES256", "kid": "rotated"}, claimsFor("carol"))
	if err != nil {
		t.Fatal(err)
	}
	if a := mustAsk(t, m.auth, "shop", "orders", unknown); a.reason != "key_not_found" {
		t.Errorf("unknown kid during the outage: %s, want key_not_found", a)
	}
	waitFor(t, 30*time.Second, "KeysLoaded=True/KeysStale", func() error {
		return conditionIs(env.Client, "shop", "orders", authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysStale, "HTTP 503")
	})
	if v, _ := metric(m.metrics(t), "claimguard_keys_stale", "source", f.url()); v != 1 {
		t.Errorf("claimguard_keys_stale = %v during the outage, want 1", v)
	}
	f.set(idpUp, 0)
	waitFor(t, 30*time.Second, "KeysLoaded=True/KeysLoaded after the second recovery", func() error {
		return conditionIs(env.Client, "shop", "orders", authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysLoaded)
	})
	if v, _ := metric(m.metrics(t), "claimguard_keys_stale", "source", f.url()); v != 0 {
		t.Errorf("claimguard_keys_stale = %v after recovery, want 0", v)
	}
	tr.Stop()
	tr.expectClean(t, 50)
	noSecretsLogged(t, m.logs.String(), mix.valid, mix.forged, idp().PublicJWKS())
}
