package admission_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/controllers"
	"github.com/claimguard/claimguard/internal/certs"
	"github.com/claimguard/claimguard/internal/store"
	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/internal/wiring"
	"github.com/claimguard/claimguard/webhook/admission"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

const (
	nginxClass   = "cg-nginx"
	traefikClass = "cg-traefik"
	otherClass   = "cg-other"
	// trustedSA is the service account the test manager trusts, as claimguard's own.
	trustedSA = "system:serviceaccount:claimguard-system:claimguard"
)

var (
	env   *testenv.Env
	idp   *authztest.Issuer
	mgr   *harness
	nsSeq atomic.Int64
)

// TestMain installs the webhook configurations exactly as `kubectl apply -k config/webhook`
// would (the generated manifests with the kustomize patches: namespaceSelector, timeouts),
// pointed by envtest at a local port, and runs one manager with the controllers and the
// webhooks for the package.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	var err error
	if idp, err = authztest.NewIssuer("https://idp.example.com/realms/shop"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "claimguard-webhooks-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	out, err := exec.Command("kubectl", "kustomize", filepath.Join(testenv.RepoRoot(), "config", "webhook")).Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubectl kustomize config/webhook:", err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(dir, "webhooks.yaml"), out, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// ADMISSION_TEST_LOG=1 shows the manager's logs (all levels) when a test needs debugging.
	if os.Getenv("ADMISSION_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapcore.Level(-5))))
	} else {
		ctrl.SetLogger(logr.Discard())
	}
	// The experimental channel's HTTPRoute and ReferenceGrant CRDs, from the
	// sigs.k8s.io/gateway-api module claimguard is built with.
	gw, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "find the sigs.k8s.io/gateway-api module:", err)
		return 1
	}
	crds := filepath.Join(strings.TrimSpace(string(gw)), "config", "crd", "experimental")
	if env, err = testenv.Start(testenv.Options{WebhookDirs: []string{dir}, ExtraCRDDirs: []string{
		filepath.Join(crds, "gateway.networking.k8s.io_httproutes.yaml"),
		filepath.Join(crds, "gateway.networking.k8s.io_referencegrants.yaml"),
	}}); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop:", err)
		}
	}()
	ctx := context.Background()
	// The auth Service's namespace, where the controller keeps the HTTPRoutes' ReferenceGrants.
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: wiring.DefaultOptions().AuthServiceNamespace}}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for name, controller := range map[string]string{nginxClass: wiring.DefaultNginxController, traefikClass: wiring.DefaultTraefikController, otherClass: "example.com/other"} {
		if err := env.Client.Create(ctx, &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: controller}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	if mgr, err = startManager(); err != nil {
		fmt.Fprintln(os.Stderr, "start the manager:", err)
		return 1
	}
	// Stopped before the API server, which otherwise waits for the manager's watches.
	defer func() { mgr.stop() }()
	return m.Run()
}

// harness is the manager of the package: controllers and webhooks, on envtest's webhook port.
type harness struct {
	cancel context.CancelFunc
	done   chan error
}

func startManager() (*harness, error) {
	wo := env.WebhookInstallOptions
	var co cache.Options
	controllers.ConfigureCache(&co)
	var m ctrl.Manager
	server := certs.Gate(webhook.NewServer(webhook.Options{Host: wo.LocalServingHost, Port: wo.LocalServingPort, CertDir: wo.LocalServingCertDir}),
		func(ctx context.Context) error {
			if !m.GetCache().WaitForCacheSync(ctx) {
				return errors.New("caches did not sync")
			}
			return nil
		})
	m, err := ctrl.NewManager(env.Config, ctrl.Options{
		Scheme:                 env.Scheme,
		Cache:                  co,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer:          server,
	})
	if err != nil {
		return nil, err
	}
	if _, _, err := controllers.Setup(m, controllers.Options{
		Store:  store.New(),
		Wiring: wiring.DefaultOptions(),
		Timing: controllers.Timing{Debounce: 20 * time.Millisecond, CRDRecheck: time.Second},
	}); err != nil {
		return nil, err
	}
	if err := admission.Setup(m, admission.Options{Wiring: wiring.DefaultOptions(), TrustedUsers: []string{trustedSA}}); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- m.Start(ctx) }()
	check := m.GetWebhookServer().StartedChecker()
	deadline := time.Now().Add(30 * time.Second)
	for check(&http.Request{}) != nil {
		if time.Now().After(deadline) {
			h.stop()
			return nil, errors.New("the webhook server did not start within 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return h, nil
}

func (h *harness) stop() {
	h.cancel()
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
	}
}

// newNamespace creates a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("cg-adm-%d", nsSeq.Add(1))
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	return name
}

// guardedNamespace creates a namespace with the given policies and waits until the controller
// has labelled it guarded, so that the Ingress webhooks are called for it.
func guardedNamespace(t *testing.T, policies ...*authv1alpha1.JWTPolicy) string {
	t.Helper()
	ns := newNamespace(t)
	for _, p := range policies {
		p.Namespace = ns
		create(t, p)
		// Distinct creation seconds make the oldest-wins order the order given here.
		if len(policies) > 1 {
			time.Sleep(1100 * time.Millisecond)
		}
	}
	waitGuarded(t, ns)
	return ns
}

func policyFixture(name string, mods ...func(*authv1alpha1.JWTPolicy)) *authv1alpha1.JWTPolicy {
	p := &authv1alpha1.JWTPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: authv1alpha1.JWTPolicySpec{
			Issuers:       []authv1alpha1.Issuer{{Issuer: idp.URL, Audiences: []string{"orders-api"}, JWKS: authv1alpha1.JWKSSource{Inline: idp.PublicJWKS()}}},
			ForwardClaims: []authv1alpha1.ForwardClaim{{Claim: "sub", Header: "X-Auth-Subject"}},
		},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func selecting(labels map[string]string) func(*authv1alpha1.JWTPolicy) {
	return func(p *authv1alpha1.JWTPolicy) { p.Spec.IngressSelector = &metav1.LabelSelector{MatchLabels: labels} }
}

func ingressFixture(ns, name, class string, labels map[string]string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To(class),
			DefaultBackend:   &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "app", Port: networkingv1.ServiceBackendPort{Number: 80}}},
		},
	}
}

// nginxWiring is what claimguard writes on an ingress-nginx Ingress guarded by policy.
func nginxWiring(ns, policy string) map[string]string {
	return map[string]string{
		wiring.AnnotationPolicy:                     policy,
		wiring.AnnotationNginxAuthURL:               wiring.DefaultOptions().AuthURL(ns, policy),
		wiring.AnnotationNginxAuthResponseHeaders:   "X-Auth-Subject",
		wiring.AnnotationNginxAuthKeepalive:         wiring.NginxKeepalive,
		wiring.AnnotationNginxAuthKeepaliveRequests: wiring.NginxKeepaliveRequests,
		wiring.AnnotationNginxAuthKeepaliveTimeout:  wiring.NginxKeepaliveTimeout,
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func getIngress(t *testing.T, c client.Client, ns, name string) *networkingv1.Ingress {
	t.Helper()
	ing := &networkingv1.Ingress{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ing); err != nil {
		t.Fatal(err)
	}
	return ing
}

// tryUpdate re-reads the Ingress with c, applies mutate and writes it once more on conflicts;
// it returns the API server's answer.
func tryUpdate(c client.Client, ns, name string, mutate func(*networkingv1.Ingress)) error {
	for range 5 {
		ing := &networkingv1.Ingress{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ing); err != nil {
			return err
		}
		if ing.Annotations == nil {
			ing.Annotations = map[string]string{}
		}
		if ing.Labels == nil {
			ing.Labels = map[string]string{}
		}
		mutate(ing)
		err := c.Update(context.Background(), ing)
		if !apierrors.IsConflict(err) {
			return err
		}
	}
	return errors.New("conflicts")
}

// kubectl runs the real kubectl against the test API server, with stdin, and returns its
// stdout, stderr and error.
func kubectl(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return out.String(), errOut.String(), err
}
