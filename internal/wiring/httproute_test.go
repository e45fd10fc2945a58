package wiring

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

func routePolicy(name string, mods ...func(*authv1alpha1.JWTPolicy)) *authv1alpha1.JWTPolicy {
	p := &authv1alpha1.JWTPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}}
	for _, m := range mods {
		m(p)
	}
	return p
}

func forwarding(headers ...string) func(*authv1alpha1.JWTPolicy) {
	return func(p *authv1alpha1.JWTPolicy) {
		for _, h := range headers {
			p.Spec.ForwardClaims = append(p.Spec.ForwardClaims, authv1alpha1.ForwardClaim{Claim: "sub", Header: h})
		}
	}
}

func TestExternalAuthFilter(t *testing.T) {
	o := DefaultOptions()
	p := routePolicy("orders", forwarding("x-auth-subject", "X-Auth-Roles"), func(p *authv1alpha1.JWTPolicy) {
		p.Spec.TokenSources = []authv1alpha1.TokenSource{
			{Header: &authv1alpha1.HeaderTokenSource{Name: "authorization", Prefix: "Bearer "}},
			{Header: &authv1alpha1.HeaderTokenSource{Name: "x-api-token"}},
			{Cookie: &authv1alpha1.CookieTokenSource{Name: "access_token"}},
			{Cookie: &authv1alpha1.CookieTokenSource{Name: "other"}},
		}
	})
	want := gatewayv1.HTTPRouteFilter{
		Type: gatewayv1.HTTPRouteFilterExternalAuth,
		ExternalAuth: &gatewayv1.HTTPExternalAuthFilter{
			ExternalAuthProtocol: gatewayv1.HTTPRouteExternalAuthHTTPProtocol,
			BackendRef: gatewayv1.BackendObjectReference{
				Group: ptr.To(gatewayv1.Group("")), Kind: ptr.To(gatewayv1.Kind("Service")),
				Name: "claimguard", Namespace: ptr.To(gatewayv1.Namespace("claimguard-system")), Port: ptr.To(gatewayv1.PortNumber(8443)),
			},
			HTTPAuthConfig: &gatewayv1.HTTPAuthConfig{
				Path: "/authz/shop/orders",
				// Authorization is always sent; the other token sources must be asked for.
				AllowedRequestHeaders:  []string{"X-Api-Token", "Cookie"},
				AllowedResponseHeaders: []string{"X-Auth-Subject", "X-Auth-Roles", AuditHeader},
			},
		},
	}
	if d := cmp.Diff(want, ExternalAuthFilter(o, p)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	// No forwarded claims: the list is still not empty (empty means "copy every header").
	if got := ExternalAuthFilter(o, routePolicy("plain")).ExternalAuth.HTTPAuthConfig; len(got.AllowedRequestHeaders) != 0 ||
		!cmp.Equal(got.AllowedResponseHeaders, []string{AuditHeader}) {
		t.Errorf("a policy without forwardClaims or token sources: %+v", got)
	}
}

// filters builds a rule with the given filters.
func rule(fs ...gatewayv1.HTTPRouteFilter) gatewayv1.HTTPRouteRule {
	return gatewayv1.HTTPRouteRule{
		Matches:     []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Type: ptr.To(gatewayv1.PathMatchPathPrefix), Value: ptr.To("/")}}},
		Filters:     fs,
		BackendRefs: []gatewayv1.HTTPBackendRef{{BackendRef: gatewayv1.BackendRef{BackendObjectReference: gatewayv1.BackendObjectReference{Name: "app"}}}},
	}
}

func route(rules ...gatewayv1.HTTPRouteRule) *gatewayv1.HTTPRoute {
	return &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"}, Spec: gatewayv1.HTTPRouteSpec{Rules: rules}}
}

func TestDesiredRules(t *testing.T) {
	o := DefaultOptions()
	orders, other := routePolicy("orders", forwarding("X-Auth-Subject")), routePolicy("other")
	ours, theirs := ExternalAuthFilter(o, orders), ExternalAuthFilter(o, other)
	stale := *ours.DeepCopy()
	stale.ExternalAuth.HTTPAuthConfig.AllowedResponseHeaders = []string{"X-Old"}
	headers := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
		RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "X-Env", Value: "prod"}}}}
	oauth := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterExternalAuth, ExternalAuth: &gatewayv1.HTTPExternalAuthFilter{
		ExternalAuthProtocol: gatewayv1.HTTPRouteExternalAuthHTTPProtocol,
		BackendRef:           gatewayv1.BackendObjectReference{Name: "oauth2-proxy", Port: ptr.To(gatewayv1.PortNumber(4180))},
		HTTPAuthConfig:       &gatewayv1.HTTPAuthConfig{Path: "/oauth2/auth"},
	}}
	// claimguard's Service, another namespace's policy: not claimguard's doing, left alone.
	foreign := *ours.DeepCopy()
	foreign.ExternalAuth.HTTPAuthConfig.Path = "/authz/elsewhere/orders"
	for _, tc := range []struct {
		name  string
		owner *authv1alpha1.JWTPolicy
		in    *gatewayv1.HTTPRoute
		want  []gatewayv1.HTTPRouteRule
	}{
		{"wire every rule, first", orders, route(rule(), rule(headers)), []gatewayv1.HTTPRouteRule{rule(ours), rule(ours, headers)}},
		{"up to date", orders, route(rule(ours, headers)), []gatewayv1.HTTPRouteRule{rule(ours, headers)}},
		{"moved to the front", orders, route(rule(headers, ours)), []gatewayv1.HTTPRouteRule{rule(ours, headers)}},
		{"stale headers replaced", orders, route(rule(stale, headers)), []gatewayv1.HTTPRouteRule{rule(ours, headers)}},
		{"handed over in place", orders, route(rule(theirs, headers)), []gatewayv1.HTTPRouteRule{rule(ours, headers)}},
		{"duplicates dropped", orders, route(rule(ours, theirs, ours)), []gatewayv1.HTTPRouteRule{rule(ours)}},
		{"other auth filters stay, after", orders, route(rule(oauth, foreign)), []gatewayv1.HTTPRouteRule{rule(ours, oauth, foreign)}},
		{"unwire keeps the user's filters", nil, route(rule(ours, headers), rule(ours)), []gatewayv1.HTTPRouteRule{rule(headers), rule()}},
		{"unwire removes every policy's filter", nil, route(rule(theirs, oauth, ours)), []gatewayv1.HTTPRouteRule{rule(oauth)}},
		{"no rules", orders, route(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.in.DeepCopy()
			got := DesiredRules(o, tc.owner, tc.in)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if d := cmp.Diff(before, tc.in); d != "" {
				t.Errorf("the route was modified:\n%s", d)
			}
			// The patch the reconciler sends yields the same rules.
			if d := cmp.Diff(tc.want, patched(t, tc.in, WiringOps(o, tc.owner, tc.in)), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("WiringOps applied (-want +got):\n%s", d)
			}
			if tc.owner != nil && len(got) > 0 {
				wired := tc.in.DeepCopy()
				wired.Spec.Rules = got
				if !RouteWired(o, tc.owner, wired) {
					t.Error("the result is not RouteWired")
				}
				if d := cmp.Diff(got, DesiredRules(o, tc.owner, wired)); d != "" {
					t.Errorf("not idempotent:\n%s", d)
				}
			}
		})
	}
}

func TestClaimguardFilterPolicy(t *testing.T) {
	o := DefaultOptions()
	base := ExternalAuthFilter(o, routePolicy("orders"))
	mod := func(f func(*gatewayv1.HTTPExternalAuthFilter)) gatewayv1.HTTPRouteFilter {
		c := *base.DeepCopy()
		f(c.ExternalAuth)
		return c
	}
	for _, tc := range []struct {
		name   string
		filter gatewayv1.HTTPRouteFilter
		policy string
	}{
		{"ours", base, "orders"},
		{"defaults left out", mod(func(e *gatewayv1.HTTPExternalAuthFilter) {
			e.BackendRef.Group, e.BackendRef.Kind = nil, nil
		}), "orders"},
		{"another Service", mod(func(e *gatewayv1.HTTPExternalAuthFilter) { e.BackendRef.Name = "oauth2-proxy" }), ""},
		{"the same name in the route's namespace", mod(func(e *gatewayv1.HTTPExternalAuthFilter) { e.BackendRef.Namespace = nil }), ""},
		{"another kind", mod(func(e *gatewayv1.HTTPExternalAuthFilter) { e.BackendRef.Kind = ptr.To(gatewayv1.Kind("ServiceImport")) }), ""},
		{"another namespace's policy", mod(func(e *gatewayv1.HTTPExternalAuthFilter) { e.HTTPAuthConfig.Path = "/authz/other/orders" }), ""},
		{"a path below the endpoint", mod(func(e *gatewayv1.HTTPExternalAuthFilter) { e.HTTPAuthConfig.Path = "/authz/shop/orders/x" }), ""},
		{"no http config", mod(func(e *gatewayv1.HTTPExternalAuthFilter) { e.HTTPAuthConfig = nil }), ""},
		{"not ExternalAuth", gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ClaimguardFilterPolicy(o, "shop", &tc.filter)
			if got != tc.policy || ok != (tc.policy != "") {
				t.Errorf("ClaimguardFilterPolicy = %q, %v; want %q", got, ok, tc.policy)
			}
		})
	}
}

func TestWiredPoliciesAndRoom(t *testing.T) {
	o := DefaultOptions()
	a, b := ExternalAuthFilter(o, routePolicy("a")), ExternalAuthFilter(o, routePolicy("b"))
	r := route(rule(b), rule(a, b), rule())
	if d := cmp.Diff([]string{"a", "b"}, WiredPolicies(o, r)); d != "" {
		t.Errorf("WiredPolicies (-want +got):\n%s", d)
	}
	if RouteWired(o, routePolicy("a"), r) {
		t.Error("a route with rules of two policies is RouteWired")
	}
	full := make([]gatewayv1.HTTPRouteFilter, 16)
	for i := range full {
		full[i] = gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterExtensionRef, ExtensionRef: &gatewayv1.LocalObjectReference{Name: "x"}}
	}
	if got := TooManyFilters(o, route(rule(), rule(full...))); got != 1 {
		t.Errorf("TooManyFilters = %d, want 1", got)
	}
	if got := TooManyFilters(o, route(rule(append([]gatewayv1.HTTPRouteFilter{a}, full[1:]...)...))); got != -1 {
		t.Errorf("a rule holding claimguard's filter and 15 others has room: TooManyFilters = %d", got)
	}
}

func TestRouteOwnership(t *testing.T) {
	at := func(sec int64) metav1.Time { return metav1.NewTime(time.Unix(1700000000+sec, 0)) }
	pol := func(name string, created int64, ingress, routes *metav1.LabelSelector) authv1alpha1.JWTPolicy {
		return authv1alpha1.JWTPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: at(created)},
			Spec: authv1alpha1.JWTPolicySpec{IngressSelector: ingress, RouteSelector: routes}}
	}
	app := func(v string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": v}}
	}
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "In"}}}
	r := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}}
	for _, tc := range []struct {
		name     string
		policies []authv1alpha1.JWTPolicy
		want     string
	}{
		{"absent routeSelector selects every route", []authv1alpha1.JWTPolicy{pol("a", 0, app("none"), nil)}, "a"},
		{"routeSelector, not ingressSelector", []authv1alpha1.JWTPolicy{pol("a", 0, app("web"), app("none")), pol("b", 5, app("none"), app("web"))}, "b"},
		{"oldest wins", []authv1alpha1.JWTPolicy{pol("a", 5, nil, nil), pol("z", 1, nil, app("web"))}, "z"},
		{"invalid routeSelector selects nothing", []authv1alpha1.JWTPolicy{pol("a", 0, nil, bad), pol("b", 5, nil, nil)}, "b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if p := NewOwnership(tc.policies).RouteOwner(r); p != nil {
				got = p.Name
			}
			if got != tc.want {
				t.Errorf("owner %q, want %q", got, tc.want)
			}
		})
	}
}

func TestDesiredReferenceGrant(t *testing.T) {
	o := DefaultOptions()
	g := DesiredReferenceGrant(o, "shop")
	if g.Namespace != "claimguard-system" || g.Name != "claimguard-routes-shop" || g.Labels[LabelRouteNamespace] != "shop" {
		t.Errorf("grant %s/%s labels %v", g.Namespace, g.Name, g.Labels)
	}
	if f := g.Spec.From[0]; f.Group != "gateway.networking.k8s.io" || f.Kind != "HTTPRoute" || f.Namespace != "shop" || len(g.Spec.From) != 1 {
		t.Errorf("from %+v", g.Spec.From)
	}
	if to := g.Spec.To[0]; to.Group != "" || to.Kind != "Service" || ptr.Deref(to.Name, "") != "claimguard" || len(g.Spec.To) != 1 {
		t.Errorf("to %+v: the grant must name the auth Service only", g.Spec.To)
	}
	if !ReferenceGrantUpToDate(g, g) {
		t.Error("a grant is not up to date with itself")
	}
	wider := g.DeepCopy()
	wider.Spec.To[0].Name = nil // every Service of the namespace
	if ReferenceGrantUpToDate(wider, g) {
		t.Error("a grant for every Service counts as up to date")
	}
	if NeedsReferenceGrant(o, "claimguard-system") || !NeedsReferenceGrant(o, "shop") {
		t.Error("NeedsReferenceGrant")
	}
}

// patched applies ops to the JSON of r and returns the resulting rules.
func patched(t *testing.T, r *gatewayv1.HTTPRoute, ops []PatchOp) []gatewayv1.HTTPRouteRule {
	t.Helper()
	raw, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ApplyOps(raw, ops)
	if err != nil {
		t.Fatalf("ApplyOps %v: %v", ops, err)
	}
	var got gatewayv1.HTTPRoute
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return got.Spec.Rules
}

func TestMissingFilterOps(t *testing.T) {
	o := DefaultOptions()
	orders, other := routePolicy("orders"), routePolicy("other")
	ours, theirs := ExternalAuthFilter(o, orders), ExternalAuthFilter(o, other)
	redirect := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{StatusCode: ptr.To(301)}}
	in := route(rule(), rule(redirect), rule(theirs), rule(redirect, ours))
	// Added where claimguard has no filter; a rule with another policy's filter, or with
	// claimguard's not first, is left for the validating webhook.
	want := []gatewayv1.HTTPRouteRule{rule(ours), rule(ours, redirect), rule(theirs), rule(redirect, ours)}
	if d := cmp.Diff(want, patched(t, in, MissingFilterOps(o, orders, in)), cmpopts.EquateEmpty()); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

// TestOpsKeepUnknownFields: a field of a newer Gateway API release (unknown to the Go types) in
// a rule, a filter or the spec survives the patch.
func TestOpsKeepUnknownFields(t *testing.T) {
	o := DefaultOptions()
	doc := `{"apiVersion":"gateway.networking.k8s.io/v1","kind":"HTTPRoute","metadata":{"namespace":"shop","name":"web"},
	"spec":{"futureSpec":1,"rules":[{"futureRule":{"a":[1,2],"big":12345678901234567890},"filters":[{"type":"RequestHeaderModifier","requestHeaderModifier":{"set":[{"name":"X","value":"1"}]},"futureFilter":true}],
	"backendRefs":[{"name":"app","port":8080}]}]}}`
	var r gatewayv1.HTTPRoute
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		t.Fatal(err)
	}
	out, err := ApplyOps([]byte(doc), WiringOps(o, routePolicy("orders"), &r))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"futureSpec":1`, `"futureRule":{"a":[1,2],"big":12345678901234567890}`, `"futureFilter":true`, `"path":"/authz/shop/orders"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the patched document lost %s:\n%s", want, out)
		}
	}
}

func TestApplyOpsErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   PatchOp
	}{
		{"index out of range", PatchOp{Op: "remove", Path: "/a/2"}},
		{"missing member", PatchOp{Op: "add", Path: "/b/c", Value: 1}},
		{"replace absent", PatchOp{Op: "replace", Path: "/z", Value: 1}},
		{"into a scalar", PatchOp{Op: "add", Path: "/n/x", Value: 1}},
		{"unknown op", PatchOp{Op: "move", Path: "/a/0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ApplyOps([]byte(`{"a":[1,2],"n":3}`), []PatchOp{tc.op}); err == nil {
				t.Error("no error")
			}
		})
	}
	got, err := ApplyOps([]byte(`{"a":[1,2],"m~/k":{}}`), []PatchOp{{Op: "add", Path: "/a/-", Value: 3}, {Op: "add", Path: "/m~0~1k/x", Value: "y"}, {Op: "replace", Path: "/a/0", Value: 0}})
	if err != nil || string(got) != `{"a":[0,2,3],"m~/k":{"x":"y"}}` {
		t.Errorf("ApplyOps = %s, %v", got, err)
	}
}
