package reliability

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/testenv"
)

// newEnv starts a control plane of the test's own: managers watch every namespace, so two
// scenarios sharing an API server would reconcile each other's policies.
func newEnv(t *testing.T) *testenv.Env {
	t.Helper()
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	return env
}

// managerProc is a running `claimguard manager`.
type managerProc struct {
	*proc
	auth   string // http://host:port of the forward-auth listener
	probes string // http://host:port of the health probes
}

// startManager runs `claimguard manager` against kubeconfig with the scenarios' defaults (no
// webhooks, no metrics listener, no drain delay, http:// JWKS allowed) and extra flags. It does
// not wait: see waitReady.
func startManager(t *testing.T, name, kubeconfig string, flags ...string) *managerProc {
	t.Helper()
	auth, probes := testenv.FreeAddr(t), testenv.FreeAddr(t)
	args := append([]string{"manager",
		"--kubeconfig", kubeconfig,
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", probes,
		"--auth-bind-address", auth,
		"--auth-service-namespace", "claimguard-system",
		"--shutdown-delay", "0s",
		"--webhook-bind-address", "0",
		"--allow-insecure-jwks-http",
	}, flags...)
	return &managerProc{proc: startProc(t, name, args...), auth: "http://" + auth, probes: "http://" + probes}
}

// waitReady waits for the probe listener's /readyz.
func (m *managerProc) waitReady(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, timeout, m.name+" ready", func() error {
		if !m.running() {
			t.Fatalf("%s exited: %v", m.name, m.err)
		}
		if c := statusOf(m.probes + "/readyz"); c != http.StatusOK {
			return fmt.Errorf("/readyz %d", c)
		}
		return nil
	})
}

// authURL is the forward-auth endpoint of ns/name on this manager.
func (m *managerProc) authURL(ns, name string) string { return m.auth + "/authz/" + ns + "/" + name }

func (m *managerProc) metrics(t *testing.T) string { return scrape(t, m.auth+"/metrics") }

// createNamespace creates namespace ns.
func createNamespace(t *testing.T, c client.Client, ns string) {
	t.Helper()
	if err := c.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
}

// decodePolicy turns a policyDoc into an object.
func decodePolicy(t *testing.T, doc string) *authv1alpha1.JWTPolicy {
	t.Helper()
	p := &authv1alpha1.JWTPolicy{}
	if err := yaml.UnmarshalStrict([]byte(doc), p); err != nil {
		t.Fatalf("policy document: %v", err)
	}
	return p
}

// createPolicy creates the JWTPolicy of a policyDoc.
func createPolicy(t *testing.T, c client.Client, doc string) *authv1alpha1.JWTPolicy {
	t.Helper()
	p := decodePolicy(t, doc)
	if err := c.Create(ctx(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// getPolicy reads ns/name.
func getPolicy(c client.Client, ns, name string) (*authv1alpha1.JWTPolicy, error) {
	p := &authv1alpha1.JWTPolicy{}
	err := c.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, p)
	return p, err
}

// conditionIs checks that ns/name has the condition typ with status and reason (reason ""
// matches any), written for the current generation, and that its message contains every one
// of msgParts.
func conditionIs(c client.Client, ns, name, typ string, status metav1.ConditionStatus, reason string, msgParts ...string) error {
	p, err := getPolicy(c, ns, name)
	if err != nil {
		return err
	}
	cond := meta.FindStatusCondition(p.Status.Conditions, typ)
	switch {
	case cond == nil:
		return fmt.Errorf("no %s condition yet", typ)
	case cond.Status != status || (reason != "" && cond.Reason != reason):
		return fmt.Errorf("%s is %s/%s (%q), want %s/%s", typ, cond.Status, cond.Reason, cond.Message, status, reason)
	case cond.ObservedGeneration != p.Generation:
		return fmt.Errorf("%s was written for generation %d, the policy is at %d", typ, cond.ObservedGeneration, p.Generation)
	}
	for _, part := range msgParts {
		if !strings.Contains(cond.Message, part) {
			return fmt.Errorf("%s message %q does not say %q", typ, cond.Message, part)
		}
	}
	return nil
}
