package admission_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

func selectingRoutes(labels map[string]string) func(*authv1alpha1.JWTPolicy) {
	return func(p *authv1alpha1.JWTPolicy) { p.Spec.RouteSelector = &metav1.LabelSelector{MatchLabels: labels} }
}

var envHeader = gatewayv1.HTTPRouteFilter{
	Type:                  gatewayv1.HTTPRouteFilterRequestHeaderModifier,
	RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "X-Env", Value: "prod"}}},
}

func routeRule(path string, fs ...gatewayv1.HTTPRouteFilter) gatewayv1.HTTPRouteRule {
	return gatewayv1.HTTPRouteRule{
		Matches:     []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To(path)}}},
		Filters:     fs,
		BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "app", Port: ptr.To(gatewayv1.PortNumber(80))}}}},
	}
}

// httpRoute is a route with a rule without filters and one with envHeader.
func httpRoute(ns, name string, labels map[string]string) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: gatewayv1.HTTPRouteSpec{
			CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{{Name: "gw"}}},
			Rules:           []gatewayv1.HTTPRouteRule{routeRule("/api"), routeRule("/admin", envHeader)},
		},
	}
}

// claimguardFilter is the filter claimguard sets for policy (as created by policyFixture).
func claimguardFilter(ns, policy string) gatewayv1.HTTPRouteFilter {
	p := policyFixture(policy)
	p.Namespace = ns
	return wiring.ExternalAuthFilter(wiring.DefaultOptions(), p)
}

// filtersOf returns the filters of each rule.
func filtersOf(r *gatewayv1.HTTPRoute) [][]gatewayv1.HTTPRouteFilter {
	out := make([][]gatewayv1.HTTPRouteFilter, len(r.Spec.Rules))
	for i := range r.Spec.Rules {
		out[i] = r.Spec.Rules[i].Filters
	}
	return out
}

func getHTTPRoute(t *testing.T, c client.Client, ns, name string) *gatewayv1.HTTPRoute {
	t.Helper()
	r := &gatewayv1.HTTPRoute{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, r); err != nil {
		t.Fatal(err)
	}
	return r
}

// tryUpdateRoute re-reads the route with c, applies mutate and writes it, once more on
// conflicts; it returns the API server's answer and, on success, the stored route.
func tryUpdateRoute(c client.Client, ns, name string, mutate func(*gatewayv1.HTTPRoute)) (*gatewayv1.HTTPRoute, error) {
	for range 5 {
		r := &gatewayv1.HTTPRoute{}
		if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, r); err != nil {
			return nil, err
		}
		if r.Labels == nil {
			r.Labels = map[string]string{}
		}
		mutate(r)
		err := c.Update(context.Background(), r)
		if !apierrors.IsConflict(err) {
			return r, err
		}
	}
	return nil, errors.New("conflicts")
}

// TestRouteWiredOnFirstRead creates HTTPRoutes in a guarded namespace and reads them the first
// way anyone can: the create response and the ADDED event of a watch opened before. Every rule
// already starts with claimguard's filter; the user's filters follow. A route no policy selects
// is left alone.
func TestRouteWiredOnFirstRead(t *testing.T) {
	ns := guardedNamespace(t, policyFixture("orders", selectingRoutes(map[string]string{"app": "shop"})))
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := wc.Watch(ctx, &gatewayv1.HTTPRouteList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	ours := claimguardFilter(ns, "orders")
	want := [][]gatewayv1.HTTPRouteFilter{{ours}, {ours, envHeader}}
	r := httpRoute(ns, "web", map[string]string{"app": "shop"})
	create(t, r) // the client reads the create response into r
	if d := cmp.Diff(want, filtersOf(r)); d != "" {
		t.Errorf("create response (-want +got):\n%s", d)
	}
	select {
	case ev := <-w.ResultChan():
		got, ok := ev.Object.(*gatewayv1.HTTPRoute)
		if !ok || ev.Type != watch.Added {
			t.Fatalf("first event %s %T", ev.Type, ev.Object)
		}
		if d := cmp.Diff(want, filtersOf(got)); d != "" {
			t.Errorf("first watch event (-want +got):\n%s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}

	plain := httpRoute(ns, "blog", map[string]string{"app": "blog"})
	create(t, plain)
	if d := cmp.Diff([][]gatewayv1.HTTPRouteFilter{nil, {envHeader}}, filtersOf(plain)); d != "" {
		t.Errorf("a route no policy selects was changed (-want +got):\n%s", d)
	}
}

// TestRouteGuard tries, as a cluster administrator who is not claimguard, the ways to take a
// guarded route out from under its policy that the guard knows of: each is refused with a
// message naming the route, the policy and what was refused. Then what the guard lets through,
// including what the mutating webhook puts right: a filter removed, rules replaced wholesale by
// a manifest that never had the filter (kubectl apply, GitOps), a new rule.
func TestRouteGuard(t *testing.T) {
	ns := guardedNamespace(t, policyFixture("orders", selectingRoutes(map[string]string{"app": "shop"})))
	create(t, httpRoute(ns, "web", map[string]string{"app": "shop"}))
	ours := claimguardFilter(ns, "orders")
	withPath := func(path string) gatewayv1.HTTPRouteFilter {
		f := *ours.DeepCopy()
		f.ExternalAuth.HTTPAuthConfig.Path = path
		return f
	}
	oauth := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterExternalAuth, ExternalAuth: &gatewayv1.HTTPExternalAuthFilter{
		ExternalAuthProtocol: gatewayv1.HTTPRouteExternalAuthHTTPProtocol,
		BackendRef:           gatewayv1.BackendObjectReference{Name: "oauth2-proxy", Port: ptr.To(gatewayv1.PortNumber(4180))},
		HTTPAuthConfig:       &gatewayv1.HTTPAuthConfig{Path: "/oauth2/auth"},
	}}
	forge := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
		RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "X-Auth-Subject", Value: "admin"}}}}
	setFilters := func(rule int, fs ...gatewayv1.HTTPRouteFilter) func(*gatewayv1.HTTPRoute) {
		return func(r *gatewayv1.HTTPRoute) { r.Spec.Rules[rule].Filters = fs }
	}
	for _, tc := range []struct {
		name   string
		mutate func(*gatewayv1.HTTPRoute)
		want   string
	}{
		// No longer claimguard's endpoint, so not claimguard's filter: the mutating webhook puts
		// claimguard's first, and the repointed one is a second ExternalAuth filter.
		{"point the filter at another endpoint", setFilters(0, withPath("/healthz")), "it adds rule 0, filter 1 (ExternalAuth)"},
		{"name another policy", setFilters(0, withPath("/authz/"+ns+"/lenient")), "path /authz/" + ns + "/lenient"},
		{"drop the forwarded headers", func(r *gatewayv1.HTTPRoute) {
			r.Spec.Rules[0].Filters[0].ExternalAuth.HTTPAuthConfig.AllowedResponseHeaders = []string{"X-Claimguard-Audit"}
		}, "that claimguard does not set; for JWTPolicy orders it sets"},
		{"a filter before claimguard's", setFilters(1, envHeader, ours), "rule 1 has filter 0 (RequestHeaderModifier) before claimguard's ExternalAuth filter"},
		{"a second ExternalAuth filter", setFilters(1, ours, oauth), "it adds rule 1, filter 1 (ExternalAuth)"},
		{"forge a forwarded claim", setFilters(1, ours, forge), "it sets header X-Auth-Subject, which JWTPolicy orders fills from the verified token"},
		{"labels drop out of the selection", func(r *gatewayv1.HTTPRoute) { r.Labels["app"] = "unguarded" }, "its labels no longer match spec.routeSelector of JWTPolicy orders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := getHTTPRoute(t, env.Client, ns, "web")
			_, err := tryUpdateRoute(env.Client, ns, "web", tc.mutate)
			if err == nil {
				t.Fatal("the change was admitted")
			}
			for _, want := range []string{
				`admission webhook "vhttproute.claimguard.dev" denied the request`,
				fmt.Sprintf("claimguard refused this change to HTTPRoute %s/web, which JWTPolicy orders guards", ns),
				tc.want,
				"edit JWTPolicy " + ns + "/orders",
				"ask a cluster administrator to exempt it (label auth.claimguard.dev/exempt=true)",
			} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %q:\n%v", want, err)
				}
			}
			after := getHTTPRoute(t, env.Client, ns, "web")
			if d := cmp.Diff(before.Spec, after.Spec); d != "" {
				t.Errorf("spec changed (-before +after):\n%s", d)
			}
		})
	}

	wired := [][]gatewayv1.HTTPRouteFilter{{ours}, {ours, envHeader}}
	redirect := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{Scheme: ptr.To("https"), StatusCode: ptr.To(301)}}
	rewrite := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{Hostname: ptr.To(gatewayv1.PreciseHostname("internal.example.com"))}}
	for _, tc := range []struct {
		name   string
		mutate func(*gatewayv1.HTTPRoute)
		want   [][]gatewayv1.HTTPRouteFilter // the stored filters afterwards
	}{
		{"a label the selector does not look at", func(r *gatewayv1.HTTPRoute) { r.Labels["team"] = "payments" }, wired},
		{"the filter removed: put back", setFilters(1, envHeader), wired},
		{"every filter removed: put back", func(r *gatewayv1.HTTPRoute) {
			r.Spec.Rules = []gatewayv1.HTTPRouteRule{routeRule("/api"), routeRule("/admin", envHeader)}
		}, wired},
		{"a rule added: wired", func(r *gatewayv1.HTTPRoute) {
			r.Spec.Rules = append(r.Spec.Rules, routeRule("/v2", rewrite))
		}, append(wired, []gatewayv1.HTTPRouteFilter{ours, rewrite})},
		{"a redirect rule: wired", func(r *gatewayv1.HTTPRoute) {
			rule := routeRule("/old", redirect)
			rule.BackendRefs = nil
			r.Spec.Rules = append(r.Spec.Rules[:2], rule)
		}, append(wired, []gatewayv1.HTTPRouteFilter{ours, redirect})},
		{"the backend", func(r *gatewayv1.HTTPRoute) { r.Spec.Rules[0].BackendRefs[0].Name = "app-v2" }, append(wired, []gatewayv1.HTTPRouteFilter{ours, redirect})},
	} {
		t.Run("allowed/"+tc.name, func(t *testing.T) {
			got, err := tryUpdateRoute(env.Client, ns, "web", tc.mutate)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if d := cmp.Diff(tc.want, filtersOf(got)); d != "" {
				t.Errorf("stored filters (-want +got):\n%s", d)
			}
		})
	}
}

// canEditRoutes binds user to a Role of namespace ns that edits HTTPRoutes: a tenant.
func canEditRoutes(t *testing.T, ns, user string) {
	t.Helper()
	name := "route-editor-" + strings.ReplaceAll(user, ":", "-")
	create(t, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{gatewayv1.GroupName}, Resources: []string{"httproutes"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}},
	})
	bind(t, ns, "Role", name, user)
}

// TestRouteExemption: a tenant who edits HTTPRoutes cannot exempt one; a cluster administrator
// can, and may then add what the guard refuses; a tenant's later change to the exempt route is
// judged as if it were not exempt. The exemption lifts refusals, not the wiring.
func TestRouteExemption(t *testing.T) {
	ns := guardedNamespace(t, policyFixture("orders"))
	create(t, httpRoute(ns, "web", nil))
	tenant := userClient(t, "route-tenant-"+ns)
	canEditRoutes(t, ns, "route-tenant-"+ns)
	exempt := func(r *gatewayv1.HTTPRoute) { r.Labels[wiring.LabelExempt] = "true" }
	ours := claimguardFilter(ns, "orders")
	oauth := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterExternalAuth, ExternalAuth: &gatewayv1.HTTPExternalAuthFilter{
		ExternalAuthProtocol: gatewayv1.HTTPRouteExternalAuthHTTPProtocol,
		// Group and kind as the API server defaults them, so the stored filter compares equal.
		BackendRef: gatewayv1.BackendObjectReference{Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")),
			Name: "oauth2-proxy", Port: ptr.To(gatewayv1.PortNumber(4180))},
		HTTPAuthConfig: &gatewayv1.HTTPAuthConfig{Path: "/oauth2/auth"}}}

	_, err := tryUpdateRoute(tenant, ns, "web", exempt)
	if err == nil || !strings.Contains(err.Error(), "claimguard refused this change to HTTPRoute "+ns+"/web: it adds the label auth.claimguard.dev/exempt=true") ||
		!strings.Contains(err.Error(), "may exempt an HTTPRoute") {
		t.Fatalf("a tenant exempted a route: %v", err)
	}
	if _, err := tryUpdateRoute(env.Client, ns, "web", exempt); err != nil {
		t.Fatalf("a cluster administrator could not exempt: %v", err)
	}
	got, err := tryUpdateRoute(env.Client, ns, "web", func(r *gatewayv1.HTTPRoute) { r.Spec.Rules[0].Filters = append(r.Spec.Rules[0].Filters, oauth) })
	if err != nil {
		t.Fatalf("an administrator's change to an exempt route was refused: %v", err)
	}
	if d := cmp.Diff([]gatewayv1.HTTPRouteFilter{ours, oauth}, got.Spec.Rules[0].Filters); d != "" {
		t.Errorf("rule 0 filters (-want +got):\n%s", d)
	}
	if _, err := tryUpdateRoute(tenant, ns, "web", func(r *gatewayv1.HTTPRoute) { r.Labels["tier"] = "frontend" }); err != nil {
		t.Fatalf("a tenant's harmless change to the exempt route: %v", err)
	}
	_, err = tryUpdateRoute(tenant, ns, "web", func(r *gatewayv1.HTTPRoute) { r.Spec.Rules[1].Filters = append(r.Spec.Rules[1].Filters, oauth) })
	if err == nil || !strings.Contains(err.Error(), "The HTTPRoute is exempt, but only for users allowed the verb") {
		t.Fatalf("a tenant used an administrator's exemption: %v", err)
	}
	// An exempt route is still wired: the filter comes back when the administrator removes it.
	got, err = tryUpdateRoute(env.Client, ns, "web", func(r *gatewayv1.HTTPRoute) { r.Spec.Rules[0].Filters = []gatewayv1.HTTPRouteFilter{oauth} })
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]gatewayv1.HTTPRouteFilter{ours, oauth}, got.Spec.Rules[0].Filters); d != "" {
		t.Errorf("rule 0 filters after the administrator removed claimguard's (-want +got):\n%s", d)
	}
}
