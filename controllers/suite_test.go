package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

var (
	env *testenv.Env
	// idp and idp2 are generated once: RSA key generation is the slow part of a test.
	idp, idp2 *authztest.Issuer
	nsSeq     atomic.Int64
)

const (
	nginxClass   = "cg-nginx"
	traefikClass = "cg-traefik"
	otherClass   = "cg-other"
)

func TestMain(m *testing.M) {
	// CONTROLLERS_TEST_LOG=1 shows the controllers' logs (all levels) when a test needs debugging.
	if os.Getenv("CONTROLLERS_TEST_LOG") != "" {
		ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(true), zap.Level(zapcore.Level(-5))))
	}
	var err error
	if idp, err = authztest.NewIssuer("https://idp.example.com/realms/shop"); err == nil {
		idp2, err = authztest.NewIssuer("https://idp.example.com/realms/shop")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(testenv.Main(m, testenv.Options{}, func(e *testenv.Env) {
		env = e
		ctx := context.Background()
		for name, controller := range map[string]string{
			nginxClass:   "k8s.io/ingress-nginx",
			traefikClass: "traefik.io/ingress-controller",
			otherClass:   "example.com/other",
		} {
			ic := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: controller}}
			if err := e.Client.Create(ctx, ic); err != nil {
				panic(err)
			}
		}
	}))
}

// harness is one manager running the controllers against the shared API server, with its
// cache limited to one namespace so that tests in other namespaces do not see each other.
type harness struct {
	mgr     ctrl.Manager
	store   *store.Store
	builder *SnapshotBuilder
	rec     *JWTPolicyReconciler
	cancel  context.CancelFunc
	done    chan error
	elected <-chan struct{}
}

type harnessOptions struct {
	leaderElectionID string
	userAgent        string
	fetcher          keys.FetcherOptions
	// wiring replaces wiringForTest() (an auth Service in a namespace of the test's own).
	wiring *WiringOptions
	// cacheNamespaces are cached besides the test's namespace (the auth Service's).
	cacheNamespaces []string
}

func wiringForTest() WiringOptions {
	return DefaultWiringOptions()
}

func startManager(t *testing.T, ns string, ho harnessOptions) *harness {
	t.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 200, 400
	if ho.userAgent != "" {
		cfg.UserAgent = ho.userAgent
	}
	var co cache.Options
	ConfigureCache(&co)
	co.DefaultNamespaces = map[string]cache.Config{ns: {}}
	for _, extra := range ho.cacheNamespaces {
		co.DefaultNamespaces[extra] = cache.Config{}
	}
	opts := ctrl.Options{
		Scheme:                 env.Scheme,
		Cache:                  co,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	}
	if ho.leaderElectionID != "" {
		lease, renew, retry := 3*time.Second, 2*time.Second, 250*time.Millisecond
		opts.LeaderElection = true
		opts.LeaderElectionID = ho.leaderElectionID
		opts.LeaderElectionNamespace = ns
		opts.LeaderElectionReleaseOnCancel = true
		opts.LeaseDuration, opts.RenewDeadline, opts.RetryPeriod = &lease, &renew, &retry
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	fo := ho.fetcher
	fo.AllowInsecureHTTP = true
	h := &harness{mgr: mgr, store: store.New(), done: make(chan error, 1)}
	wo := wiringForTest()
	if ho.wiring != nil {
		wo = *ho.wiring
	}
	h.builder, h.rec, err = Setup(mgr, Options{
		Store:      h.store,
		Fetcher:    fo,
		TokenCache: policy.NewCache(1000),
		Wiring:     wo,
		Timing:     Timing{Debounce: 20 * time.Millisecond, CRDRecheck: 300 * time.Millisecond, KeyRecheck: 2 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.elected = mgr.Elected()
	go func() { h.done <- mgr.Start(ctx) }()
	t.Cleanup(h.stop)
	return h
}

// stop stops the manager and waits for it; safe to call twice.
func (h *harness) stop() {
	h.cancel()
	if h.done == nil {
		return
	}
	select {
	case <-h.done:
	case <-time.After(30 * time.Second):
	}
	h.done = nil
}

// newNamespace creates a namespace for one test and deletes it at the end.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("cg-%s-%d", strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())), nsSeq.Add(1))
	if len(name) > 63 {
		name = fmt.Sprintf("cg-%d-%s", nsSeq.Add(1), strings.Trim(name[len(name)-40:], "-"))
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return name
}

// policyFixture builds a JWTPolicy from modifiers.
func policyFixture(ns, name string, mods ...func(*authv1alpha1.JWTPolicy)) *authv1alpha1.JWTPolicy {
	p := &authv1alpha1.JWTPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: authv1alpha1.JWTPolicySpec{
			Issuers: []authv1alpha1.Issuer{{
				Issuer:    idp.URL,
				Audiences: []string{"orders-api"},
				JWKS:      authv1alpha1.JWKSSource{Inline: idp.PublicJWKS()},
			}},
			ForwardClaims: []authv1alpha1.ForwardClaim{{Claim: "sub", Header: "x-auth-subject"}},
		},
	}
	for _, m := range mods {
		m(p)
	}
	return p
}

func withSelector(labels map[string]string) func(*authv1alpha1.JWTPolicy) {
	return func(p *authv1alpha1.JWTPolicy) {
		p.Spec.IngressSelector = &metav1.LabelSelector{MatchLabels: labels}
	}
}

func withJWKS(src authv1alpha1.JWKSSource) func(*authv1alpha1.JWTPolicy) {
	return func(p *authv1alpha1.JWTPolicy) { p.Spec.Issuers[0].JWKS = src }
}

// ingressFixture is an Ingress of class class (nil: none) with labels.
func ingressFixture(ns, name string, class *string, labels map[string]string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: networkingv1.IngressSpec{
			IngressClassName: class,
			DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: "app", Port: networkingv1.ServiceBackendPort{Number: 80},
			}},
		},
	}
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

func getPolicy(t *testing.T, ns, name string) *authv1alpha1.JWTPolicy {
	t.Helper()
	p := &authv1alpha1.JWTPolicy{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

func getIngress(t *testing.T, ns, name string) *networkingv1.Ingress {
	t.Helper()
	ing := &networkingv1.Ingress{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ing); err != nil {
		t.Fatal(err)
	}
	return ing
}

// update re-reads obj, applies mutate and writes it, retrying on conflicts.
func update[T client.Object](t *testing.T, obj T, mutate func(T)) {
	t.Helper()
	for range 10 {
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		mutate(obj)
		err := env.Client.Update(context.Background(), obj)
		if err == nil {
			return
		}
		if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
	t.Fatalf("update %s: conflicts", obj.GetName())
}

// conditionIs checks one condition of a freshly read policy, observed at its generation.
func conditionIs(ns, name, typ string, status metav1.ConditionStatus, reason string) func() error {
	return func() error {
		p := &authv1alpha1.JWTPolicy{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			return err
		}
		c := getCondition(p.Status.Conditions, typ)
		if c == nil {
			return fmt.Errorf("no %s condition yet (conditions %v)", typ, p.Status.Conditions)
		}
		if c.Status != status || c.Reason != reason || c.ObservedGeneration != p.Generation {
			return fmt.Errorf("%s is %s/%s at generation %d (%q), want %s/%s at %d", typ, c.Status, c.Reason, c.ObservedGeneration, c.Message, status, reason, p.Generation)
		}
		return nil
	}
}

// decide asks the harness's current snapshot, as the forward-auth server would.
func (h *harness) decide(ns, name, token string) (policy.Decision, error) {
	p := h.store.Load().Get(ns, name)
	if p == nil {
		return policy.Decision{}, fmt.Errorf("policy %s/%s is not in the snapshot", ns, name)
	}
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	return p.Decide(&policy.Request{Header: hdr, Path: "/orders"}), nil
}

// wantAllowed waits until a token is allowed (or, allowed=false, denied with reason).
func (h *harness) waitDecision(t *testing.T, ns, name, token string, allowed bool, reason policy.Reason) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "decision", func() error {
		d, err := h.decide(ns, name, token)
		if err != nil {
			return err
		}
		if d.Allowed != allowed || d.Reason != reason {
			return fmt.Errorf("decision allowed=%v reason=%q, want allowed=%v reason=%q", d.Allowed, d.Reason, allowed, reason)
		}
		return nil
	})
}

var errNotWired = errors.New("not wired")
