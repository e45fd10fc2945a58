package reliability

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/scheme"
	"github.com/claimguard/claimguard/internal/testenv"
)

// restartableEnv is a control plane whose API server can be stopped and started again: etcd
// keeps running (and with it every object), the secure port stays the same, and the serving
// certificate is kept because it lives in a directory of the test's own (envtest generates a
// new CA on every start when it owns the directory, which no running client would trust).
type restartableEnv struct {
	te         *envtest.Environment
	client     client.Client
	kubeconfig string
}

func startRestartableEnv(t *testing.T) *restartableEnv {
	t.Helper()
	assets, err := testenv.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	te := &envtest.Environment{
		Scheme:                   scheme.New(),
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        []string{filepath.Join(testenv.RepoRoot(), "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	te.ControlPlane.GetAPIServer().CertDir = t.TempDir()
	cfg, err := te.Start()
	if err != nil {
		_ = te.Stop()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = te.Stop() })
	c, err := client.New(cfg, client.Options{Scheme: te.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	user, err := te.AddUser(envtest.User{Name: "reliability-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return &restartableEnv{te: te, client: c, kubeconfig: path}
}

// apiServerOutage is how long the API server stays away: longer than the manager's renew
// deadline (10s), so the leader cannot renew its lease during it, as in a control-plane
// upgrade.
const apiServerOutage = 20 * time.Second

// TestAPIServerRestart stops the API server for 20s while forward-auth traffic flows to a
// manager running with leader election (the default): every request keeps getting the decision
// it got before (the last snapshot stays in force, no request fails), the manager process
// stays up, and after the API server is back a policy change is served and its status written.
func TestAPIServerRestart(t *testing.T) {
	t.Parallel()
	env := startRestartableEnv(t)
	createNamespace(t, env.client, "shop")
	createPolicy(t, env.client, policyDoc("shop", "orders", inlineKeys(), ""))
	m := startManager(t, "manager", env.kubeconfig, "--leader-election-namespace", "default")
	m.waitReady(t, 60*time.Second)
	waitFor(t, 30*time.Second, "Ready=True", func() error {
		return conditionIs(env.client, "shop", "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	})

	mix := newTokenMix(t, "ES256")
	tr := startTraffic(t, 2, 10*time.Millisecond, []target{{"manager", m.authURL("shop", "orders")}}, mix.probes("ES256"))
	time.Sleep(time.Second)

	api := env.te.ControlPlane.APIServer
	if err := api.Stop(); err != nil {
		t.Fatalf("stop the API server: %v", err)
	}
	t.Logf("API server stopped for %s", apiServerOutage)
	// The liveness probe must hold all along: a failing one would have the kubelet restart
	// the container, and a restarted manager cannot build a snapshot without the API server.
	deadline := time.Now().Add(apiServerOutage)
	for time.Now().Before(deadline) && m.running() {
		if c := statusOf(m.probes + "/healthz"); c != http.StatusOK {
			t.Errorf("liveness probe /healthz %d during the outage", c)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if !m.running() {
		t.Errorf("the manager exited during the API server outage: %v", m.err)
	}
	if !strings.Contains(m.logs.String(), "Lost the leader election") {
		t.Errorf("the outage of %s did not cost the leader its lease; the scenario did not happen", apiServerOutage)
	}
	if err := api.Start(); err != nil {
		t.Fatalf("start the API server again: %v", err)
	}
	restarted := time.Now()
	t.Log("API server started again")
	time.Sleep(3 * time.Second)
	tr.Stop()
	tr.expectClean(t, 300)
	if !m.running() {
		t.Fatalf("the manager is not running after the outage: %v", m.err)
	}

	// Convergence: a change made after the restart is served and its status written.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := getPolicy(env.client, "shop", "orders")
		if err != nil {
			return err
		}
		p.Spec.RequiredClaims[0].Values = []string{"orders:write"}
		return env.client.Update(ctx(), p)
	})
	if err != nil {
		t.Fatalf("update the policy after the restart: %v", err)
	}
	waitFor(t, 60*time.Second, "the change served and its status written", func() error {
		if a, err := ask(m.auth, "shop", "orders", mix.valid); err != nil || a.status != http.StatusForbidden || a.reason != "claim_mismatch" {
			return fmt.Errorf("token with orders:read after requiring orders:write: %s %v", a, err)
		}
		p, err := getPolicy(env.client, "shop", "orders")
		if err != nil {
			return err
		}
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
		}
		return conditionIs(env.client, "shop", "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	})
	t.Logf("converged %s after the API server came back (change served, status written)", time.Since(restarted).Round(100*time.Millisecond))
}
