package wiring

import (
	"fmt"
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// IngressSelector returns the policy's ingressSelector as a labels.Selector: absent or empty
// selects every Ingress of the namespace.
func IngressSelector(p *authv1alpha1.JWTPolicy) (labels.Selector, error) {
	if p.Spec.IngressSelector == nil {
		return labels.Everything(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.IngressSelector)
	if err != nil {
		return nil, fmt.Errorf("spec.ingressSelector: %w", err)
	}
	return sel, nil
}

// candidate is a policy that may own Ingresses and HTTPRoutes of its namespace.
type candidate struct {
	policy   *authv1alpha1.JWTPolicy
	selector labels.Selector // nil when the selector is invalid: selects nothing
	routes   labels.Selector // the routeSelector, nil likewise
}

// Ownership decides which policy owns each Ingress (and HTTPRoute) of one namespace: of the live (not
// deleting) policies that select it, the oldest by creationTimestamp, then by name. Every
// replica and every pass computes the same answer from the same objects, and a policy being
// deleted owns nothing, so its Ingresses pass straight to the next policy in line.
type Ownership struct {
	cands []candidate // sorted: oldest first
}

// NewOwnership builds the Ownership of one namespace from its policies. It keeps pointers into
// policies, which must not change afterwards.
func NewOwnership(policies []authv1alpha1.JWTPolicy) *Ownership {
	o := &Ownership{}
	for i := range policies {
		p := &policies[i]
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		sel, err := IngressSelector(p)
		if err != nil {
			sel = nil
		}
		routes, err := RouteSelector(p)
		if err != nil {
			routes = nil
		}
		o.cands = append(o.cands, candidate{policy: p, selector: sel, routes: routes})
	}
	slices.SortFunc(o.cands, func(a, b candidate) int { return ComparePolicies(a.policy, b.policy) })
	return o
}

// ComparePolicies orders policies by age: older first, then by name.
func ComparePolicies(a, b *authv1alpha1.JWTPolicy) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	switch {
	case a.Name < b.Name:
		return -1
	case a.Name > b.Name:
		return 1
	}
	return 0
}

// Owner returns the policy that owns ing, nil when no live policy selects it.
func (o *Ownership) Owner(ing *networkingv1.Ingress) *authv1alpha1.JWTPolicy {
	set := labels.Set(ing.Labels)
	for _, c := range o.cands {
		if c.selector != nil && c.selector.Matches(set) {
			return c.policy
		}
	}
	return nil
}

// RouteOwner returns the policy that owns route, by routeSelector and the same oldest-wins
// order as for Ingresses; nil when no live policy selects it.
func (o *Ownership) RouteOwner(route *gatewayv1.HTTPRoute) *authv1alpha1.JWTPolicy {
	set := labels.Set(route.Labels)
	for _, c := range o.cands {
		if c.routes != nil && c.routes.Matches(set) {
			return c.policy
		}
	}
	return nil
}

// Lookup returns the live policy called name, nil when it is absent or being deleted.
func (o *Ownership) Lookup(name string) *authv1alpha1.JWTPolicy {
	for _, c := range o.cands {
		if c.policy.Name == name {
			return c.policy
		}
	}
	return nil
}
