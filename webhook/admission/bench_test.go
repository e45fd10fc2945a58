package admission

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

// BenchmarkGuard measures what one Ingress admission costs claimguard besides reading the
// cache: building the ownership of a namespace with n policies (the cache read returns them),
// the mutation and the guard's judgement of an update of a wired Ingress.
func BenchmarkGuard(b *testing.B) {
	opts := wiring.DefaultOptions()
	classes := []networkingv1.IngressClass{{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: wiring.DefaultNginxController}}}
	for _, n := range []int{1, 100} {
		pols := make([]authv1alpha1.JWTPolicy, n)
		for i := range pols {
			pols[i] = authv1alpha1.JWTPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("p%03d", i), CreationTimestamp: metav1.NewTime(time.Unix(int64(1700000000+i), 0))},
				Spec: authv1alpha1.JWTPolicySpec{IngressSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%03d", i)}},
					ForwardClaims: []authv1alpha1.ForwardClaim{{Claim: "sub", Header: "X-Auth-Subject"}}},
			}
		}
		last := fmt.Sprintf("a%03d", n-1) // selected by the youngest policy: the longest search
		own := wiring.NewOwnership(pols)
		owner := own.Owner(ingress("nginx", last, nil))
		old := ingress("nginx", last, wiring.DesiredAnnotations(opts, owner, ingress("nginx", last, nil), wiring.Nginx, nil))
		upd := old.DeepCopy()
		upd.Annotations["nginx.ingress.kubernetes.io/proxy-body-size"] = "8m"
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				own := wiring.NewOwnership(pols)
				cls := wiring.NewClassifier(opts, classes)
				ing := upd.DeepCopy()
				addWiring(opts, own.Owner(ing), cls.Classify(ing).Kind, old, ing)
				if v := judge(&change{old: old, new: ing, own: own, cls: cls, opts: opts}); len(v.refusals) != 0 {
					b.Fatal(v.refusals)
				}
			}
		})
	}
}

// BenchmarkRouteGuard measures what one HTTPRoute admission costs claimguard besides reading
// the cache: the ownership of a namespace with n policies, the mutation (JSON patch of the
// request's own JSON, here of a route whose rules lost the filter, the kubectl apply case) and
// the guard's judgement, for a route of 1 and of 16 rules (the schema's maximum).
func BenchmarkRouteGuard(b *testing.B) {
	opts := wiring.DefaultOptions()
	for _, n := range []int{1, 100} {
		pols := make([]authv1alpha1.JWTPolicy, n)
		for i := range pols {
			pols[i] = authv1alpha1.JWTPolicy{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("p%03d", i), CreationTimestamp: metav1.NewTime(time.Unix(int64(1700000000+i), 0))},
				Spec: authv1alpha1.JWTPolicySpec{RouteSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": fmt.Sprintf("a%03d", i)}},
					ForwardClaims: []authv1alpha1.ForwardClaim{{Claim: "sub", Header: "X-Auth-Subject"}}},
			}
		}
		last := fmt.Sprintf("a%03d", n-1) // selected by the youngest policy: the longest search
		owner := wiring.NewOwnership(pols).RouteOwner(routeWith(last))
		for _, rules := range []int{1, 16} {
			bare := make([][]gatewayv1.HTTPRouteFilter, rules)
			for i := range bare {
				bare[i] = filters(gatewayv1.HTTPRouteFilter{Type: gatewayv1.HTTPRouteFilterRequestHeaderModifier,
					RequestHeaderModifier: &gatewayv1.HTTPHeaderFilter{Set: []gatewayv1.HTTPHeader{{Name: "X-Env", Value: "prod"}}}})
			}
			upd := routeWith(last, bare...)
			old := upd.DeepCopy()
			old.Spec.Rules = wiring.DesiredRules(opts, owner, upd)
			raw, err := json.Marshal(upd)
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("policies=%d/rules=%d", n, rules), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					own := wiring.NewOwnership(pols)
					route := &gatewayv1.HTTPRoute{}
					if err := json.Unmarshal(raw, route); err != nil {
						b.Fatal(err)
					}
					patched, err := wiring.ApplyOps(raw, wiring.MissingFilterOps(opts, own.RouteOwner(route), route))
					if err != nil {
						b.Fatal(err)
					}
					route = &gatewayv1.HTTPRoute{}
					if err := json.Unmarshal(patched, route); err != nil {
						b.Fatal(err)
					}
					if v := judgeRoute(&routeChange{old: old, new: route, own: own, opts: opts}); len(v.refusals) != 0 {
						b.Fatal(v.refusals)
					}
				}
			})
		}
	}
}
