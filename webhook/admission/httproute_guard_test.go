package admission

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/scheme"
	"github.com/claimguard/claimguard/internal/wiring"
)

// routeGuardFixture is a namespace with policy "orders" (routes app=shop, forwarding
// X-Auth-Subject) and an older policy "legacy" (routes app=legacy).
func routeGuardFixture() (*wiring.Ownership, gatewayv1.HTTPRouteFilter) {
	at := func(s int64) metav1.Time { return metav1.NewTime(time.Unix(1700000000+s, 0)) }
	pols := []authv1alpha1.JWTPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders", CreationTimestamp: at(10)},
			Spec: authv1alpha1.JWTPolicySpec{RouteSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}},
				ForwardClaims: []authv1alpha1.ForwardClaim{{Claim: "sub", Header: "X-Auth-Subject"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "legacy", CreationTimestamp: at(0)},
			Spec: authv1alpha1.JWTPolicySpec{RouteSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "legacy"}}}},
	}
	own := wiring.NewOwnership(pols)
	return own, wiring.ExternalAuthFilter(wiring.DefaultOptions(), own.Lookup("orders"))
}

func routeWith(app string, rules ...[]gatewayv1.HTTPRouteFilter) *gatewayv1.HTTPRoute {
	r := &gatewayv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"app": app}}}
	for i, fs := range rules {
		r.Spec.Rules = append(r.Spec.Rules, gatewayv1.HTTPRouteRule{
			Matches: []gatewayv1.HTTPRouteMatch{{Path: &gatewayv1.HTTPPathMatch{Value: ptr.To("/" + strings.Repeat("x", i))}}},
			Filters: fs,
		})
	}
	return r
}

func filters(fs ...gatewayv1.HTTPRouteFilter) []gatewayv1.HTTPRouteFilter { return fs }

func TestJudgeRoute(t *testing.T) {
	own, ours := routeGuardFixture()
	opts := wiring.DefaultOptions()
	stale := *ours.DeepCopy()
	stale.ExternalAuth.HTTPAuthConfig.AllowedResponseHeaders = []string{"X-Old"}
	elsewhere := *ours.DeepCopy()
	elsewhere.ExternalAuth.BackendRef.Port = ptr.To(gatewayv1.PortNumber(9999))
	legacy := wiring.ExternalAuthFilter(opts, own.Lookup("legacy"))
	oauth := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterExternalAuth, ExternalAuth: &gatewayv1.HTTPExternalAuthFilter{
		ExternalAuthProtocol: gatewayv1.HTTPRouteExternalAuthHTTPProtocol, BackendRef: gatewayv1.BackendObjectReference{Name: "oauth2-proxy"}}}
	header := func(name string) gatewayv1.HTTPRouteFilter {
		return gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
			RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Add: []gatewayv1.HTTPHeader{{Name: gatewayv1.HTTPHeaderName(name), Value: "admin"}}}}
	}
	redirect := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestRedirect, RequestRedirect: &gatewayv1.HTTPRequestRedirectFilter{StatusCode: ptr.To(301)}}
	rewrite := gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterURLRewrite, URLRewrite: &gatewayv1.HTTPURLRewriteFilter{Hostname: ptr.To(gatewayv1.PreciseHostname("internal"))}}
	wired := routeWith("shop", filters(ours), filters(ours, header("X-Env")))
	for _, tc := range []struct {
		name     string
		old, new *gatewayv1.HTTPRoute
		refusals []string // substrings, one per refusal, in order
		warnings int
	}{
		{"create, wired", nil, wired, nil, 0},
		{"unchanged", wired, wired, nil, 0},
		{"redirect and rewrite are not bypasses", wired, routeWith("shop", filters(ours, redirect), filters(ours, rewrite)), nil, 0},
		{"a rule without the filter", wired, routeWith("shop", filters(ours), filters(header("X-Env"))), []string{"rule 1 has no ExternalAuth filter of claimguard"}, 0},
		{"a filter before claimguard's", wired, routeWith("shop", filters(header("Authorization"), ours), filters(ours)), []string{"rule 0 has filter 0 (RequestHeaderModifier) before claimguard's"}, 0},
		{"claimguard's filter twice", wired, routeWith("shop", filters(ours, ours)), []string{"carries claimguard's ExternalAuth filter 2 times"}, 0},
		{"another path (policy)", wired, routeWith("shop", filters(legacy)), []string{"a claimguard ExternalAuth filter (HTTP to Service claimguard-system/claimguard port 8443, path /authz/shop/legacy"}, 0},
		{"another port", wired, routeWith("shop", filters(elsewhere)), []string{"port 9999"}, 0},
		{"a stale filter left as it was", routeWith("shop", filters(stale)), routeWith("shop", filters(stale), filters(ours)), nil, 0},
		{"a stale filter corrected", routeWith("shop", filters(stale)), routeWith("shop", filters(ours)), nil, 0},
		{"a second ExternalAuth filter", wired, routeWith("shop", filters(ours, oauth)), []string{"it adds rule 0, filter 1 (ExternalAuth): a second ExternalAuth filter"}, 0},
		{"a forged claim header", wired, routeWith("shop", filters(ours, header("x-auth-subject"))), []string{"it sets header X-Auth-Subject, which JWTPolicy orders fills from the verified token"}, 0},
		{"a bypass kept under the same policy", routeWith("shop", filters(ours, oauth)), routeWith("shop", filters(ours, oauth), filters(ours)), nil, 1},
		{"a kept bypass copied into another rule", routeWith("shop", filters(ours, oauth), filters(ours)), routeWith("shop", filters(ours, oauth), filters(ours, oauth)),
			[]string{"it adds rule 1, filter 1 (ExternalAuth)"}, 1},
		{"labels into a selection with a bypass", routeWith("none", filters(oauth)), routeWith("shop", filters(ours, oauth)), []string{"it brings the HTTPRoute under the guard with rule 0, filter 1 (ExternalAuth)"}, 0},
		{"labels out of the selection", wired, routeWith("none", filters(ours)), []string{"its labels no longer match spec.routeSelector of JWTPolicy orders"}, 0},
		{"labels to an older policy", wired, routeWith("legacy", filters(legacy)), []string{"its labels move it from JWTPolicy orders to JWTPolicy legacy"}, 0},
		{"unguarded route: anything goes", nil, routeWith("none", filters(oauth, header("X-Auth-Subject"))), nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := judgeRoute(&routeChange{old: tc.old, new: tc.new, own: own, opts: opts})
			if len(v.refusals) != len(tc.refusals) {
				t.Fatalf("refusals %q, want %d", v.refusals, len(tc.refusals))
			}
			for i, want := range tc.refusals {
				if !strings.Contains(v.refusals[i], want) {
					t.Errorf("refusal %d %q does not say %q", i, v.refusals[i], want)
				}
			}
			if len(v.warnings) != tc.warnings {
				t.Errorf("warnings %q, want %d", v.warnings, tc.warnings)
			}
		})
	}
}

type fixedSupport bool

func (f fixedSupport) ExternalAuthServed(context.Context) (bool, error) { return bool(f), nil }

// TestRouteMutatorWithoutExternalAuth: with the standard channel the mutator adds nothing (the
// API server would refuse the filter), whatever the policies say; it does not even read them.
func TestRouteMutatorWithoutExternalAuth(t *testing.T) {
	s := scheme.New()
	m := &HTTPRouteMutator{routeScope: routeScope{guardScope: guardScope{Wiring: wiring.DefaultOptions()}, Gateway: fixedSupport(false)}, decoder: admission.NewDecoder(s)}
	raw, err := json.Marshal(routeWith("shop", filters()))
	if err != nil {
		t.Fatal(err)
	}
	resp := m.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: admissionv1.Create, Namespace: "shop", Object: runtime.RawExtension{Raw: raw},
	}})
	if !resp.Allowed || len(resp.Patches) != 0 {
		t.Errorf("response %+v, want allowed without patches", resp)
	}
}
