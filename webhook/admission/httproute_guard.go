package admission

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

// routeChange is one HTTPRoute create or update as the guard sees it.
type routeChange struct {
	old *gatewayv1.HTTPRoute // nil on create
	new *gatewayv1.HTTPRoute
	own *wiring.Ownership
	// opts are the wiring options, for the filter claimguard sets.
	opts wiring.Options
}

// judgeRoute applies the guard to an HTTPRoute change, the way judge does for Ingresses. For a
// route that a policy guards before or after the change it refuses:
//   - leaving the guard: labels that drop it out of its policy's routeSelector, or move it to
//     another policy;
//   - a rule without claimguard's ExternalAuth filter (the mutating webhook adds it to every
//     rule that has none, so this is reached only when the filter was removed without it);
//   - claimguard's filter altered (another path, backend or header list than claimguard sets
//     for the policy), repeated, or not first in its rule: a filter before it acts on the
//     request before the check, and a gateway honouring the order would let a header modifier
//     set the Authorization header claimguard then checks;
//   - bypasses (see routeBypass): another ExternalAuth filter, a header modifier that sets one
//     of the headers the policy fills from the token. One that was already there, in the same
//     rule of a route the same policy guarded before, is let through with a warning.
//
// A rule the change leaves exactly as it was is not judged for its filters: a policy edit the
// reconciler has not applied yet must not block unrelated edits. RequestRedirect and
// URLRewrite are not bypasses: a redirect answers without reaching the service, and a rewrite
// changes where an already checked request goes.
func judgeRoute(c *routeChange) verdict {
	var v verdict
	var oldOwner *authv1alpha1.JWTPolicy
	if c.old != nil {
		oldOwner = c.own.RouteOwner(c.old)
	}
	owner := c.own.RouteOwner(c.new)
	if oldOwner != nil {
		v.policy = oldOwner
		switch {
		case owner == nil:
			v.refuse("its labels no longer match spec.routeSelector of JWTPolicy %s, which would leave it unguarded", oldOwner.Name)
		case owner.Name != oldOwner.Name:
			v.refuse("its labels move it from JWTPolicy %s to JWTPolicy %s", oldOwner.Name, owner.Name)
		}
	}
	if owner == nil {
		return v
	}
	if v.policy == nil {
		v.policy = owner
	}
	samePolicy := oldOwner != nil && oldOwner.Name == owner.Name
	want := wiring.ExternalAuthFilter(c.opts, owner)
	ns := c.new.Namespace
	for i := range c.new.Spec.Rules {
		rule := &c.new.Spec.Rules[i]
		unchanged := samePolicy && c.oldHasRule(rule)
		if !unchanged {
			judgeRuleWiring(c, &v, owner, i, rule, &want)
		}
		for j := range rule.Filters {
			f := &rule.Filters[j]
			if _, ours := wiring.ClaimguardFilterPolicy(c.opts, ns, f); ours {
				continue
			}
			why, bad := routeBypass(owner, f)
			if !bad {
				continue
			}
			what := fmt.Sprintf("rule %d, filter %d (%s)", i, j, f.Type)
			switch {
			case samePolicy && c.oldRuleHasFilter(i, f):
				v.warnings = append(v.warnings, fmt.Sprintf("%s stays, but %s; remove it", what, why))
			case c.old != nil && c.oldRuleHasFilter(i, f):
				v.refuse("it brings the HTTPRoute under the guard with %s: %s", what, why)
			default:
				v.refuse("it adds %s: %s", what, why)
			}
		}
	}
	return v
}

// judgeRuleWiring refuses a rule of a route that owner guards whose claimguard filter is
// missing, altered, repeated or not first. A filter equal to one the stored route carried is
// acceptable: the reconciler rewrites it, the change did not make it.
func judgeRuleWiring(c *routeChange, v *verdict, owner *authv1alpha1.JWTPolicy, i int, rule *gatewayv1.HTTPRouteRule, want *gatewayv1.HTTPRouteFilter) {
	ns := c.new.Namespace
	var ours []int
	for j := range rule.Filters {
		if _, ok := wiring.ClaimguardFilterPolicy(c.opts, ns, &rule.Filters[j]); ok {
			ours = append(ours, j)
		}
	}
	switch {
	case len(ours) == 0:
		v.refuse("rule %d has no ExternalAuth filter of claimguard, the filter that sends every request to claimguard (%s) before it reaches the service", i, describeFilter(want))
		return
	case ours[0] != 0:
		v.refuse("rule %d has filter 0 (%s) before claimguard's ExternalAuth filter, so it acts on requests before they are checked; claimguard's filter must come first", i, rule.Filters[0].Type)
	}
	if len(ours) > 1 {
		v.refuse("rule %d carries claimguard's ExternalAuth filter %d times; it must carry it once", i, len(ours))
	}
	for _, j := range ours {
		f := &rule.Filters[j]
		if wiring.SameFilter(ns, f, want) || c.oldHasFilter(f) {
			continue
		}
		v.refuse("rule %d has a claimguard ExternalAuth filter (%s) that claimguard does not set; for JWTPolicy %s it sets %s",
			i, describeFilter(f), owner.Name, describeFilter(want))
	}
}

// routeBypass reports whether a filter, not claimguard's, on a route that owner guards would
// let a request past claimguard's check or forge what it vouches for, and why.
func routeBypass(owner *authv1alpha1.JWTPolicy, f *gatewayv1.HTTPRouteFilter) (string, bool) {
	switch {
	case f.Type == gatewayv1.HTTPRouteFilterExternalAuth:
		// A rule may carry one filter of a kind; a gateway may take either, or refuse the rule.
		return "a second ExternalAuth filter in a rule is not defined by the Gateway API, and a gateway may use it instead of claimguard's", true
	case f.Type == gatewayv1.HTTPRouteFilterRequestHeaderModifier && f.RequestHeaderModifier != nil:
		claimed := wiring.ForwardHeaders(owner)
		for _, h := range append(slices.Clone(f.RequestHeaderModifier.Set), f.RequestHeaderModifier.Add...) {
			if name := http.CanonicalHeaderKey(string(h.Name)); slices.Contains(claimed, name) {
				return fmt.Sprintf("it sets header %s, which JWTPolicy %s fills from the verified token (forwardClaims), so the service would trust a value claimguard never checked", name, owner.Name), true
			}
		}
	}
	return "", false
}

// describeFilter says where an ExternalAuth filter sends requests, for refusal messages.
func describeFilter(f *gatewayv1.HTTPRouteFilter) string {
	e := f.ExternalAuth
	if e == nil {
		return string(f.Type)
	}
	ref := e.BackendRef
	desc := fmt.Sprintf("%s to %s %s/%s port %d", e.ExternalAuthProtocol, ptr.Deref(ref.Kind, "Service"), ptr.Deref(ref.Namespace, "<route namespace>"), ref.Name, ptr.Deref(ref.Port, 0))
	if h := e.HTTPAuthConfig; h != nil {
		desc += fmt.Sprintf(", path %s, allowedResponseHeaders [%s]", h.Path, strings.Join(h.AllowedResponseHeaders, ", "))
		if len(h.AllowedRequestHeaders) > 0 {
			desc += fmt.Sprintf(", allowedHeaders [%s]", strings.Join(h.AllowedRequestHeaders, ", "))
		}
	}
	return desc
}

// oldHasRule reports whether the stored route has a rule equal to rule.
func (c *routeChange) oldHasRule(rule *gatewayv1.HTTPRouteRule) bool {
	if c.old == nil {
		return false
	}
	for i := range c.old.Spec.Rules {
		if equality.Semantic.DeepEqual(&c.old.Spec.Rules[i], rule) {
			return true
		}
	}
	return false
}

// oldRuleHasFilter reports whether rule i of the stored route has a filter equal to f: a bypass
// the change keeps where it was, not one it copies into another rule.
func (c *routeChange) oldRuleHasFilter(i int, f *gatewayv1.HTTPRouteFilter) bool {
	if c.old == nil || i >= len(c.old.Spec.Rules) {
		return false
	}
	for j := range c.old.Spec.Rules[i].Filters {
		if equality.Semantic.DeepEqual(&c.old.Spec.Rules[i].Filters[j], f) {
			return true
		}
	}
	return false
}

// oldHasFilter reports whether some rule of the stored route has a filter equal to f.
func (c *routeChange) oldHasFilter(f *gatewayv1.HTTPRouteFilter) bool {
	if c.old == nil {
		return false
	}
	for i := range c.old.Spec.Rules {
		for j := range c.old.Spec.Rules[i].Filters {
			if equality.Semantic.DeepEqual(&c.old.Spec.Rules[i].Filters[j], f) {
				return true
			}
		}
	}
	return false
}

// routeRefusalMessage is the whole answer for a refused HTTPRoute change: what was refused,
// which policy guards the route, and how to do it properly.
func routeRefusalMessage(route *gatewayv1.HTTPRoute, v verdict) string {
	var b strings.Builder
	fmt.Fprintf(&b, "claimguard refused this change to HTTPRoute %s/%s, which JWTPolicy %s guards:", route.Namespace, objectName(route.Name, route.GenerateName), v.policy.Name)
	for _, r := range v.refusals {
		b.WriteString("\n- ")
		b.WriteString(r)
	}
	fmt.Fprintf(&b, "\nTo change how the HTTPRoute is guarded, edit JWTPolicy %s/%s (its routeSelector, issuers or claims); claimguard keeps the ExternalAuth filter of every rule itself, and adds it to rules that lack it. "+
		"To take the HTTPRoute out of the guard, ask a cluster administrator to exempt it (label %s=true).", v.policy.Namespace, v.policy.Name, wiring.LabelExempt)
	return b.String()
}

func objectName(name, generateName string) string {
	if name != "" {
		return name
	}
	return generateName + "<generated>"
}
