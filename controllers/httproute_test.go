package controllers

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/internal/wiring"
)

var (
	gatewayCRDMu      sync.Mutex
	gatewayCRDChannel string // "" (none), "standard" or "experimental"
)

// installGatewayCRDs installs the HTTPRoute and ReferenceGrant CRDs of a channel ("standard"
// or "experimental") from the sigs.k8s.io/gateway-api module claimguard is built with, over
// whatever is installed, and waits until they are served.
func installGatewayCRDs(t *testing.T, channel string) {
	t.Helper()
	gatewayCRDMu.Lock()
	defer gatewayCRDMu.Unlock()
	if gatewayCRDChannel == channel {
		return
	}
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		t.Fatalf("find the sigs.k8s.io/gateway-api module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", channel)
	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{
		Paths: []string{
			filepath.Join(dir, "gateway.networking.k8s.io_httproutes.yaml"),
			filepath.Join(dir, "gateway.networking.k8s.io_referencegrants.yaml"),
		},
		ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatal(err)
	}
	gatewayCRDChannel = channel
}

// gatewayHarness starts a manager for ns whose auth Service lives in a namespace of the test's
// own, so that its ReferenceGrants do not meet another test's. It returns the wiring options.
func gatewayHarness(t *testing.T, ns string) (*harness, WiringOptions) {
	t.Helper()
	auth := fmt.Sprintf("cg-auth-%d", nsSeq.Add(1))
	create(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: auth}})
	w := wiringForTest()
	w.AuthServiceNamespace = auth
	return startManager(t, ns, harnessOptions{wiring: &w, cacheNamespaces: []string{auth}}), w
}

func withRouteSelector(labels map[string]string) func(*authv1alpha1.JWTPolicy) {
	return func(p *authv1alpha1.JWTPolicy) {
		p.Spec.RouteSelector = &metav1.LabelSelector{MatchLabels: labels}
	}
}

var headerFilter = gatewayv1.HTTPRouteFilter{
	Type:                  gatewayv1.HTTPRouteFilterRequestHeaderModifier,
	RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "X-Env", Value: "prod"}}},
}

// routeFixture is an HTTPRoute with two rules: one without filters, one with headerFilter.
func routeFixture(ns, name string, labels map[string]string) *gatewayv1.HTTPRoute {
	backend := []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{
		Name: "app", Port: ptr.To(gatewayv1.PortNumber(80)),
	}}}}
	prefix := func(p string) []gatewayv1.HTTPRouteMatch {
		return []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To(p)}}}
	}
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "gw"}}},
			Rules: []gatewayv1.HTTPRouteRule{
				{Matches: prefix("/api"), BackendRefs: backend},
				{Matches: prefix("/admin"), Filters: []gatewayv1.HTTPRouteFilter{headerFilter}, BackendRefs: backend},
			},
		},
	}
}

func getRoute(t *testing.T, ns, name string) *gatewayv1.HTTPRoute {
	t.Helper()
	r := &gatewayv1.HTTPRoute{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, r); err != nil {
		t.Fatal(err)
	}
	return r
}

// routeFiltersAre checks the filters of every rule of a route: claimguard's filter for p
// first (p nil: none of claimguard's) and then the user's filters of routeFixture.
func routeFiltersAre(w WiringOptions, ns, name string, p *authv1alpha1.JWTPolicy) func() error {
	return func() error {
		r := &gatewayv1.HTTPRoute{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, r); err != nil {
			return err
		}
		user := [][]gatewayv1.HTTPRouteFilter{nil, {headerFilter}}
		for i, rule := range r.Spec.Rules {
			want := user[i]
			if p != nil {
				want = append([]gatewayv1.HTTPRouteFilter{wiring.ExternalAuthFilter(w, p)}, want...)
			}
			if d := cmp.Diff(want, rule.Filters, cmpEmpty); d != "" {
				return fmt.Errorf("rule %d filters (-want +got):\n%s", i, d)
			}
		}
		return nil
	}
}

var cmpEmpty = cmp.FilterValues(func(a, b []gatewayv1.HTTPRouteFilter) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())

// grantIs waits for the ReferenceGrant of routeNamespace (present=false: for its absence).
func grantIs(w WiringOptions, routeNamespace string, present bool) func() error {
	return func() error {
		g := &gatewayv1beta1.ReferenceGrant{}
		err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: w.AuthServiceNamespace, Name: wiring.ReferenceGrantName(routeNamespace)}, g)
		switch {
		case !present && apierrors.IsNotFound(err):
			return nil
		case !present && err == nil:
			return fmt.Errorf("ReferenceGrant %s still there", g.Name)
		case err != nil:
			return err
		}
		want := wiring.DesiredReferenceGrant(w, routeNamespace)
		if !wiring.ReferenceGrantUpToDate(g, want) {
			return fmt.Errorf("ReferenceGrant %+v, want %+v", g.Spec, want.Spec)
		}
		return nil
	}
}

func boundRoutesIs(ns, name string, n int32) func() error {
	return func() error {
		p := &authv1alpha1.JWTPolicy{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			return err
		}
		if p.Status.BoundRoutes != n {
			return fmt.Errorf("boundRoutes %d, want %d", p.Status.BoundRoutes, n)
		}
		return nil
	}
}

func conditionMessage(t *testing.T, ns, name, typ string) string {
	t.Helper()
	c := getCondition(getPolicy(t, ns, name).Status.Conditions, typ)
	if c == nil {
		t.Fatalf("no %s condition", typ)
	}
	return c.Message
}

// TestGatewayAPIInstalledLater starts without the Gateway API, then installs the standard
// channel (no ExternalAuth filter: the selected route is reported, not touched), then the
// experimental channel: the route is wired without a restart. Not parallel: it must run before
// any test installs the Gateway API CRDs.
func TestGatewayAPIInstalledLater(t *testing.T) {
	ns := newNamespace(t)
	_, w := gatewayHarness(t, ns)
	p := policyFixture(ns, "orders", withRouteSelector(map[string]string{"app": "web"}))
	create(t, p)
	testenv.Eventually(t, 10*time.Second, "NothingSelected", conditionIs(ns, "orders", authv1alpha1.ConditionIngressesWired, metav1.ConditionTrue, authv1alpha1.ReasonNothingSelected))
	if msg := conditionMessage(t, ns, "orders", authv1alpha1.ConditionIngressesWired); !strings.Contains(msg, "the Gateway API (gateway.networking.k8s.io) is not installed") {
		t.Errorf("the condition does not say that the Gateway API is missing: %q", msg)
	}

	installGatewayCRDs(t, "standard")
	create(t, routeFixture(ns, "web", map[string]string{"app": "web"}))
	testenv.Eventually(t, 15*time.Second, "ExternalAuthUnsupported", conditionIs(ns, "orders", authv1alpha1.ConditionIngressesWired, metav1.ConditionFalse, authv1alpha1.ReasonExternalAuthUnsupported))
	testenv.Eventually(t, 5*time.Second, "Ready False", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonNotReady))
	msg := conditionMessage(t, ns, "orders", authv1alpha1.ConditionIngressesWired)
	for _, want := range []string{"1 HTTPRoute is selected", "no ExternalAuth filter", "standard channel", "NOT guarded", "experimental channel", ": web"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the condition does not say %q: %q", want, msg)
		}
	}
	if err := routeFiltersAre(w, ns, "web", nil)(); err != nil {
		t.Errorf("the route was touched without the ExternalAuth filter in the schema: %v", err)
	}
	if err := grantIs(w, ns, false)(); err != nil {
		t.Error(err)
	}

	installGatewayCRDs(t, "experimental")
	testenv.Eventually(t, 15*time.Second, "wired after the upgrade", routeFiltersAre(w, ns, "web", p))
	testenv.Eventually(t, 5*time.Second, "ReferenceGrant", grantIs(w, ns, true))
	testenv.Eventually(t, 5*time.Second, "Ready", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
	testenv.Eventually(t, 5*time.Second, "boundRoutes", boundRoutesIs(ns, "orders", 1))
}

// TestHTTPRouteWiring: wiring of every rule (claimguard's filter first, the user's kept), the
// ReferenceGrant, re-wiring after a hand edit, a deleted grant put back, a policy edit, unwiring
// on a selector change and on deletion, and the grant going when no route needs it.
func TestHTTPRouteWiring(t *testing.T) {
	t.Parallel()
	installGatewayCRDs(t, "experimental")
	ns := newNamespace(t)
	_, w := gatewayHarness(t, ns)
	ctx := context.Background()
	create(t, routeFixture(ns, "web", map[string]string{"app": "web"}))
	p := policyFixture(ns, "orders", withRouteSelector(map[string]string{"app": "web"}))
	create(t, p)

	testenv.Eventually(t, 10*time.Second, "wired", routeFiltersAre(w, ns, "web", p))
	testenv.Eventually(t, 5*time.Second, "ReferenceGrant", grantIs(w, ns, true))
	testenv.Eventually(t, 5*time.Second, "Ready", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
	testenv.Eventually(t, 5*time.Second, "boundRoutes", boundRoutesIs(ns, "orders", 1))
	if msg := conditionMessage(t, ns, "orders", authv1alpha1.ConditionIngressesWired); !strings.Contains(msg, "1 HTTPRoute wired to "+w.AuthURL(ns, "orders")) {
		t.Errorf("IngressesWired message %q", msg)
	}

	// Someone removes the filter from a rule: it comes back.
	update(t, getRoute(t, ns, "web"), func(r *gatewayv1.HTTPRoute) { r.Spec.Rules[1].Filters = []gatewayv1.HTTPRouteFilter{headerFilter} })
	testenv.Eventually(t, 10*time.Second, "re-wired after an edit", routeFiltersAre(w, ns, "web", p))

	// The grant is deleted by hand: it comes back.
	g := &gatewayv1beta1.ReferenceGrant{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: w.AuthServiceNamespace, Name: wiring.ReferenceGrantName(ns)}, g); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, g); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "grant restored", func() error {
		n := &gatewayv1beta1.ReferenceGrant{}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(g), n); err != nil {
			return err
		}
		if n.UID == g.UID {
			return fmt.Errorf("old grant still there")
		}
		return nil
	})

	// A policy edit: another forwarded header, the filter follows.
	update(t, getPolicy(t, ns, "orders"), func(p *authv1alpha1.JWTPolicy) {
		p.Spec.ForwardClaims = append(p.Spec.ForwardClaims, authv1alpha1.ForwardClaim{Claim: "email", Header: "X-Auth-Email"})
	})
	p = getPolicy(t, ns, "orders")
	testenv.Eventually(t, 10*time.Second, "new headers", routeFiltersAre(w, ns, "web", p))

	// The selector stops matching: unwired, the user's filter stays, the grant goes.
	update(t, getPolicy(t, ns, "orders"), func(p *authv1alpha1.JWTPolicy) { p.Spec.RouteSelector.MatchLabels = map[string]string{"app": "none"} })
	testenv.Eventually(t, 10*time.Second, "unwired", routeFiltersAre(w, ns, "web", nil))
	testenv.Eventually(t, 10*time.Second, "grant deleted", grantIs(w, ns, false))
	testenv.Eventually(t, 5*time.Second, "NothingSelected", conditionIs(ns, "orders", authv1alpha1.ConditionIngressesWired, metav1.ConditionTrue, authv1alpha1.ReasonNothingSelected))
	testenv.Eventually(t, 5*time.Second, "boundRoutes 0", boundRoutesIs(ns, "orders", 0))

	// The route gets the label: wired again, grant again.
	update(t, getRoute(t, ns, "web"), func(r *gatewayv1.HTTPRoute) { r.Labels["app"] = "none" })
	p = getPolicy(t, ns, "orders")
	testenv.Eventually(t, 10*time.Second, "wired by label", routeFiltersAre(w, ns, "web", p))
	testenv.Eventually(t, 10*time.Second, "grant again", grantIs(w, ns, true))

	// Deletion: the finalizer unwires, then the grant goes.
	if err := env.Client.Delete(ctx, getPolicy(t, ns, "orders")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "unwired on delete", routeFiltersAre(w, ns, "web", nil))
	testenv.Eventually(t, 10*time.Second, "grant deleted after the policy", grantIs(w, ns, false))
	testenv.Eventually(t, 10*time.Second, "policy gone", func() error {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orders"}, &authv1alpha1.JWTPolicy{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

// TestHTTPRouteNoRoomForFilter: a rule that already holds the 16 filters the schema allows is
// reported as WiringFailed, once (no retry loop), and the route is left as it is.
func TestHTTPRouteNoRoomForFilter(t *testing.T) {
	t.Parallel()
	installGatewayCRDs(t, "experimental")
	ns := newNamespace(t)
	gatewayHarness(t, ns)
	r := routeFixture(ns, "full", nil)
	for range 15 {
		r.Spec.Rules[1].Filters = append(r.Spec.Rules[1].Filters, gatewayv1.HTTPRouteFilter{
			Type: gatewayv1.HTTPRouteFilterExtensionRef, ExtensionRef: &gatewayv1.LocalObjectReference{Group: "example.com", Kind: "Filter", Name: "x"},
		})
	}
	create(t, r)
	create(t, policyFixture(ns, "orders"))
	testenv.Eventually(t, 10*time.Second, "WiringFailed", conditionIs(ns, "orders", authv1alpha1.ConditionIngressesWired, metav1.ConditionFalse, authv1alpha1.ReasonWiringFailed))
	if msg := conditionMessage(t, ns, "orders", authv1alpha1.ConditionIngressesWired); !strings.Contains(msg, "rule 1 of HTTPRoute "+ns+"/full already has 16 filters") {
		t.Errorf("message %q", msg)
	}
	if got := getRoute(t, ns, "full"); len(got.Spec.Rules[0].Filters) != 0 || len(got.Spec.Rules[1].Filters) != 16 {
		t.Errorf("the route was changed: %d and %d filters", len(got.Spec.Rules[0].Filters), len(got.Spec.Rules[1].Filters))
	}
}

// routeWatch records every version of one HTTPRoute and the ones with a rule that carries no
// filter of claimguard.
type routeWatch struct {
	mu       sync.Mutex
	versions int
	unwired  []string
	policies []string
	stop     func()
	done     chan struct{}
}

func watchRoute(t *testing.T, w WiringOptions, ns, name string) *routeWatch {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	wi, err := wc.Watch(ctx, &gatewayv1.HTTPRouteList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": name})
	if err != nil {
		t.Fatal(err)
	}
	rw := &routeWatch{done: make(chan struct{})}
	rw.stop = func() {
		cancel()
		wi.Stop()
		<-rw.done
	}
	go func() {
		defer close(rw.done)
		for ev := range wi.ResultChan() {
			r, ok := ev.Object.(*gatewayv1.HTTPRoute)
			if !ok || ev.Type == watch.Bookmark {
				continue
			}
			rw.mu.Lock()
			rw.versions++
			for i := range r.Spec.Rules {
				if len(r.Spec.Rules[i].Filters) == 0 {
					rw.unwired = append(rw.unwired, fmt.Sprintf("%s %s: rule %d", ev.Type, r.ResourceVersion, i))
					continue
				}
				if _, ours := wiring.ClaimguardFilterPolicy(w, ns, &r.Spec.Rules[i].Filters[0]); !ours {
					rw.unwired = append(rw.unwired, fmt.Sprintf("%s %s: rule %d starts with %s", ev.Type, r.ResourceVersion, i, r.Spec.Rules[i].Filters[0].Type))
				}
			}
			if ps := strings.Join(wiring.WiredPolicies(w, r), "+"); len(rw.policies) == 0 || rw.policies[len(rw.policies)-1] != ps {
				rw.policies = append(rw.policies, ps)
			}
			rw.mu.Unlock()
		}
	}()
	return rw
}

// TestConflictAcrossIngressAndRoute: one policy selects an Ingress and an HTTPRoute; a newer
// policy selecting both reports one Conflict naming both objects and the winner. When the
// winner is deleted, the route passes straight to the newer policy, never seen unguarded.
func TestConflictAcrossIngressAndRoute(t *testing.T) {
	t.Parallel()
	installGatewayCRDs(t, "experimental")
	ns := newNamespace(t)
	_, w := gatewayHarness(t, ns)
	create(t, ingressFixture(ns, "web", ptr.To(nginxClass), map[string]string{"app": "web"}))
	create(t, routeFixture(ns, "api", map[string]string{"app": "web"}))
	old := policyFixture(ns, "z-old", withSelector(map[string]string{"app": "web"}), withRouteSelector(map[string]string{"app": "web"}))
	create(t, old)
	testenv.Eventually(t, 10*time.Second, "route wired to z-old", routeFiltersAre(w, ns, "api", old))
	time.Sleep(1100 * time.Millisecond) // creationTimestamp has one-second resolution
	create(t, policyFixture(ns, "a-new"))
	testenv.Eventually(t, 10*time.Second, "Conflict", conditionIs(ns, "a-new", authv1alpha1.ConditionConflict, metav1.ConditionTrue, authv1alpha1.ReasonConflictingPolicy))
	msg := conditionMessage(t, ns, "a-new", authv1alpha1.ConditionConflict)
	for _, want := range []string{"1 Ingress and 1 HTTPRoute selected by this policy are guarded by an older policy", "Ingress web (JWTPolicy z-old)", "HTTPRoute api (JWTPolicy z-old)", "spec.routeSelector"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the Conflict message does not say %q: %q", want, msg)
		}
	}
	testenv.Eventually(t, 5*time.Second, "winner's counts", func() error {
		p := getPolicy(t, ns, "z-old")
		if p.Status.BoundIngresses != 1 || p.Status.BoundRoutes != 1 {
			return fmt.Errorf("boundIngresses %d boundRoutes %d", p.Status.BoundIngresses, p.Status.BoundRoutes)
		}
		return conditionIs(ns, "z-old", authv1alpha1.ConditionConflict, metav1.ConditionFalse, authv1alpha1.ReasonNoConflict)()
	})
	if n := getPolicy(t, ns, "a-new").Status.BoundRoutes; n != 0 {
		t.Errorf("the loser counts %d routes", n)
	}

	rw := watchRoute(t, w, ns, "api")
	if err := env.Client.Delete(context.Background(), getPolicy(t, ns, "z-old")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "handed to a-new", routeFiltersAre(w, ns, "api", getPolicy(t, ns, "a-new")))
	testenv.Eventually(t, 10*time.Second, "a-new owns both", func() error {
		p := getPolicy(t, ns, "a-new")
		if p.Status.BoundIngresses != 1 || p.Status.BoundRoutes != 1 {
			return fmt.Errorf("boundIngresses %d boundRoutes %d", p.Status.BoundIngresses, p.Status.BoundRoutes)
		}
		return conditionIs(ns, "a-new", authv1alpha1.ConditionConflict, metav1.ConditionFalse, authv1alpha1.ReasonNoConflict)()
	})
	testenv.Eventually(t, 5*time.Second, "grant kept", grantIs(w, ns, true))
	rw.stop()
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if len(rw.unwired) > 0 {
		t.Errorf("the route was seen with a rule not starting with claimguard's filter during the handover:\n%s", strings.Join(rw.unwired, "\n"))
	}
	if d := cmp.Diff([]string{"z-old", "a-new"}, rw.policies); d != "" {
		t.Errorf("policies of the route's versions (-want +got):\n%s", d)
	}
}
