package wiring

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// Gateway API kinds claimguard reads and writes.
var (
	// HTTPRouteGVK is the Gateway API HTTPRoute claimguard wires (gateway.networking.k8s.io/v1).
	HTTPRouteGVK = gatewayv1.SchemeGroupVersion.WithKind("HTTPRoute")
	// ReferenceGrantGVK is the ReferenceGrant that lets HTTPRoutes of a namespace reference the
	// auth Service. v1beta1 is served by every Gateway API release that has the ExternalAuth
	// filter (v1.3 and later); v1 only from v1.5.
	ReferenceGrantGVK = gatewayv1beta1.SchemeGroupVersion.WithKind("ReferenceGrant")
)

const (
	// AuditHeader is the response header of an Audit-mode verdict. It is always in the
	// allowedResponseHeaders of claimguard's filter: the Gateway API reads an empty list as
	// "copy every header of the auth response onto the request", which would send the auth
	// answer's Date and Content-Length upstream when a policy forwards no claims.
	AuditHeader = "X-Claimguard-Audit"
	// ReferenceGrantPrefix starts the name of every ReferenceGrant claimguard creates in the auth
	// Service's namespace: "claimguard-routes-<route namespace>".
	ReferenceGrantPrefix = "claimguard-routes-"
	// LabelRouteNamespace names, on a ReferenceGrant of claimguard, the namespace whose
	// HTTPRoutes it lets reference the auth Service.
	LabelRouteNamespace = "auth.claimguard.dev/route-namespace"
	// LabelManagedBy marks the objects claimguard creates.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	// ManagedByClaimguard is the value of LabelManagedBy on claimguard's objects.
	ManagedByClaimguard = "claimguard"
	// maxFilters is the HTTPRoute schema's limit of filters per rule.
	maxFilters = 16
)

// RouteSelector returns the policy's routeSelector as a labels.Selector: absent or empty
// selects every HTTPRoute of the namespace, as ingressSelector does for Ingresses.
func RouteSelector(p *authv1alpha1.JWTPolicy) (labels.Selector, error) {
	if p.Spec.RouteSelector == nil {
		return labels.Everything(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(p.Spec.RouteSelector)
	if err != nil {
		return nil, fmt.Errorf("spec.routeSelector: %w", err)
	}
	return sel, nil
}

// AuthPath is the forward-auth path of policy namespace/name: /authz/<namespace>/<name>.
func AuthPath(namespace, name string) string {
	return "/authz/" + namespace + "/" + name
}

// ReferenceGrantName is the name of the ReferenceGrant that lets the HTTPRoutes of namespace
// reference the auth Service.
func ReferenceGrantName(namespace string) string { return ReferenceGrantPrefix + namespace }

// RequestHeaders are the client request headers claimguard's filter asks the gateway to send
// along: every header and the Cookie header a policy's tokenSources read. The Gateway API
// always sends Authorization (and Host, Method, Path, Content-Length) and nothing else unless
// listed, so without this a token in a cookie or a custom header never arrives.
func RequestHeaders(p *authv1alpha1.JWTPolicy) []string {
	var out []string
	for _, src := range p.Spec.TokenSources {
		h := ""
		switch {
		case src.Header != nil:
			h = http.CanonicalHeaderKey(src.Header.Name)
		case src.Cookie != nil:
			h = "Cookie"
		}
		if h != "" && h != "Authorization" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// ResponseHeaders are the auth response headers the gateway copies onto the request sent
// upstream: the policy's forwardClaims headers and AuditHeader (see there why it is listed).
func ResponseHeaders(p *authv1alpha1.JWTPolicy) []string {
	out := ForwardHeaders(p)
	if !slices.Contains(out, AuditHeader) {
		out = append(out, AuditHeader)
	}
	return out
}

// ExternalAuthFilter is the filter claimguard puts first in every rule of an HTTPRoute that
// owner guards: the experimental ExternalAuth filter, HTTP protocol, calling the auth Service
// at /authz/<namespace>/<policy>. Every optional field the schema defaults is set, so the
// stored filter equals this one field for field.
func ExternalAuthFilter(opts Options, owner *authv1alpha1.JWTPolicy) gatewayv1.HTTPRouteFilter {
	return gatewayv1.HTTPRouteFilter{
		Type: gatewayv1.HTTPRouteFilterExternalAuth,
		ExternalAuth: &gatewayv1.HTTPExternalAuthFilter{
			ExternalAuthProtocol: gatewayv1.HTTPRouteExternalAuthHTTPProtocol,
			BackendRef: gatewayv1.BackendObjectReference{
				Group:     ptr.To(gatewayv1.Group("")),
				Kind:      ptr.To(gatewayv1.Kind("Service")),
				Name:      gatewayv1.ObjectName(opts.AuthServiceName),
				Namespace: ptr.To(gatewayv1.Namespace(opts.AuthServiceNamespace)),
				Port:      ptr.To(gatewayv1.PortNumber(opts.AuthServicePort)),
			},
			HTTPAuthConfig: &gatewayv1.HTTPAuthConfig{
				Path:                   AuthPath(owner.Namespace, owner.Name),
				AllowedRequestHeaders:  RequestHeaders(owner),
				AllowedResponseHeaders: ResponseHeaders(owner),
			},
		},
	}
}

// ClaimguardFilterPolicy reports whether f, a filter of an HTTPRoute in routeNamespace, is
// claimguard's: an ExternalAuth filter calling the auth Service at the endpoint of a policy of
// the route's own namespace. It returns that policy's name. An ExternalAuth filter calling the
// auth Service for a policy of another namespace is not claimguard's doing and is left alone.
func ClaimguardFilterPolicy(opts Options, routeNamespace string, f *gatewayv1.HTTPRouteFilter) (string, bool) {
	if f.Type != gatewayv1.HTTPRouteFilterExternalAuth || f.ExternalAuth == nil || !callsAuthService(opts, routeNamespace, f.ExternalAuth.BackendRef) {
		return "", false
	}
	if f.ExternalAuth.HTTPAuthConfig == nil {
		return "", false
	}
	name, ok := strings.CutPrefix(f.ExternalAuth.HTTPAuthConfig.Path, AuthPath(routeNamespace, ""))
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", false
	}
	return name, true
}

// callsAuthService reports whether ref names the auth Service, with the defaults the schema
// applies (group "", kind Service, the route's namespace) for absent fields.
func callsAuthService(opts Options, routeNamespace string, ref gatewayv1.BackendObjectReference) bool {
	ns := routeNamespace
	if ref.Namespace != nil {
		ns = string(*ref.Namespace)
	}
	return ptr.Deref(ref.Group, "") == "" && ptr.Deref(ref.Kind, "Service") == "Service" &&
		string(ref.Name) == opts.AuthServiceName && ns == opts.AuthServiceNamespace
}

// SameFilter reports whether two filters of an HTTPRoute in routeNamespace are the same
// ExternalAuth filter once the schema's defaults are applied.
func SameFilter(routeNamespace string, a, b *gatewayv1.HTTPRouteFilter) bool {
	if a.Type != b.Type || (a.ExternalAuth == nil) != (b.ExternalAuth == nil) {
		return false
	}
	if a.ExternalAuth == nil {
		return false // claimguard writes only ExternalAuth filters
	}
	x, y := a.ExternalAuth, b.ExternalAuth
	if x.ExternalAuthProtocol != y.ExternalAuthProtocol || x.GRPCAuthConfig != nil || y.GRPCAuthConfig != nil ||
		!sameBackend(routeNamespace, x.BackendRef, y.BackendRef) {
		return false
	}
	if ptr.Deref(x.ForwardBody, gatewayv1.ForwardBodyConfig{}) != ptr.Deref(y.ForwardBody, gatewayv1.ForwardBodyConfig{}) {
		return false
	}
	hx, hy := ptr.Deref(x.HTTPAuthConfig, gatewayv1.HTTPAuthConfig{}), ptr.Deref(y.HTTPAuthConfig, gatewayv1.HTTPAuthConfig{})
	return hx.Path == hy.Path && slices.Equal(hx.AllowedRequestHeaders, hy.AllowedRequestHeaders) &&
		slices.Equal(hx.AllowedResponseHeaders, hy.AllowedResponseHeaders)
}

func sameBackend(routeNamespace string, a, b gatewayv1.BackendObjectReference) bool {
	nsA, nsB := gatewayv1.Namespace(routeNamespace), gatewayv1.Namespace(routeNamespace)
	return ptr.Deref(a.Group, "") == ptr.Deref(b.Group, "") && ptr.Deref(a.Kind, "Service") == ptr.Deref(b.Kind, "Service") &&
		a.Name == b.Name && ptr.Deref(a.Namespace, nsA) == ptr.Deref(b.Namespace, nsB) && ptr.Deref(a.Port, 0) == ptr.Deref(b.Port, 0)
}

// DesiredRules returns the rules of route as claimguard wants them when owner guards it (owner
// nil: unwired). Every filter of claimguard (ClaimguardFilterPolicy) is removed from every rule
// and, with an owner, owner's filter is put first in each, so no other filter of the rule acts
// before the check. Everything else, the user's filters in their order included, is kept. A
// filter already equal to owner's (SameFilter) is kept as stored, so an up-to-date route
// compares equal. One write of the result moves a route between policies, or back to unwired,
// without an unguarded version in between. route is not modified.
func DesiredRules(opts Options, owner *authv1alpha1.JWTPolicy, route *gatewayv1.HTTPRoute) []gatewayv1.HTTPRouteRule {
	if len(route.Spec.Rules) == 0 {
		return route.Spec.Rules
	}
	var want gatewayv1.HTTPRouteFilter
	if owner != nil {
		want = ExternalAuthFilter(opts, owner)
	}
	out := make([]gatewayv1.HTTPRouteRule, len(route.Spec.Rules))
	for i := range route.Spec.Rules {
		rule := route.Spec.Rules[i].DeepCopy()
		var first *gatewayv1.HTTPRouteFilter
		if owner != nil && len(rule.Filters) > 0 && SameFilter(route.Namespace, &rule.Filters[0], &want) {
			first = &rule.Filters[0]
		}
		kept := make([]gatewayv1.HTTPRouteFilter, 0, len(rule.Filters)+1)
		switch {
		case first != nil:
			kept = append(kept, *first)
		case owner != nil:
			kept = append(kept, *want.DeepCopy())
		}
		for j := range rule.Filters {
			if _, ours := ClaimguardFilterPolicy(opts, route.Namespace, &rule.Filters[j]); !ours {
				kept = append(kept, rule.Filters[j])
			}
		}
		if len(kept) == 0 {
			kept = nil
		}
		rule.Filters = kept
		out[i] = *rule
	}
	return out
}

// WiredPolicies returns the names of the policies whose filter some rule of route carries,
// sorted and without repeats.
func WiredPolicies(opts Options, route *gatewayv1.HTTPRoute) []string {
	var out []string
	for i := range route.Spec.Rules {
		for j := range route.Spec.Rules[i].Filters {
			if name, ok := ClaimguardFilterPolicy(opts, route.Namespace, &route.Spec.Rules[i].Filters[j]); ok && !slices.Contains(out, name) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// RouteWired reports whether every rule of route starts with owner's filter and carries no
// other filter of claimguard.
func RouteWired(opts Options, owner *authv1alpha1.JWTPolicy, route *gatewayv1.HTTPRoute) bool {
	want := ExternalAuthFilter(opts, owner)
	for i := range route.Spec.Rules {
		fs := route.Spec.Rules[i].Filters
		if len(fs) == 0 || !SameFilter(route.Namespace, &fs[0], &want) {
			return false
		}
		for j := 1; j < len(fs); j++ {
			if _, ours := ClaimguardFilterPolicy(opts, route.Namespace, &fs[j]); ours {
				return false
			}
		}
	}
	return true
}

// TooManyFilters returns the index of the first rule that has no room for claimguard's filter
// (the schema allows 16 per rule), -1 when every rule has room.
func TooManyFilters(opts Options, route *gatewayv1.HTTPRoute) int {
	for i := range route.Spec.Rules {
		n := 0
		for j := range route.Spec.Rules[i].Filters {
			if _, ours := ClaimguardFilterPolicy(opts, route.Namespace, &route.Spec.Rules[i].Filters[j]); !ours {
				n++
			}
		}
		if n >= maxFilters {
			return i
		}
	}
	return -1
}

// DesiredReferenceGrant is the ReferenceGrant, in the auth Service's namespace, that lets the
// HTTPRoutes of routeNamespace reference the auth Service (and nothing else): a backendRef to
// another namespace is refused by the gateway without one.
func DesiredReferenceGrant(opts Options, routeNamespace string) *gatewayv1beta1.ReferenceGrant {
	name := gatewayv1.ObjectName(opts.AuthServiceName)
	return &gatewayv1beta1.ReferenceGrant{
		TypeMeta: metav1.TypeMeta{APIVersion: ReferenceGrantGVK.GroupVersion().String(), Kind: ReferenceGrantGVK.Kind},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: opts.AuthServiceNamespace,
			Name:      ReferenceGrantName(routeNamespace),
			Labels:    map[string]string{LabelManagedBy: ManagedByClaimguard, LabelRouteNamespace: routeNamespace},
		},
		Spec: gatewayv1beta1.ReferenceGrantSpec{
			From: []gatewayv1beta1.ReferenceGrantFrom{{
				Group:     gatewayv1.GroupName,
				Kind:      "HTTPRoute",
				Namespace: gatewayv1.Namespace(routeNamespace),
			}},
			To: []gatewayv1beta1.ReferenceGrantTo{{Group: "", Kind: "Service", Name: &name}},
		},
	}
}

// ReferenceGrantUpToDate reports whether cur grants what want grants and carries its labels.
func ReferenceGrantUpToDate(cur, want *gatewayv1beta1.ReferenceGrant) bool {
	for k, v := range want.Labels {
		if cur.Labels[k] != v {
			return false
		}
	}
	if len(cur.Spec.From) != len(want.Spec.From) || len(cur.Spec.To) != len(want.Spec.To) {
		return false
	}
	for i := range want.Spec.From {
		if cur.Spec.From[i] != want.Spec.From[i] {
			return false
		}
	}
	for i := range want.Spec.To {
		c, w := cur.Spec.To[i], want.Spec.To[i]
		if c.Group != w.Group || c.Kind != w.Kind || ptr.Deref(c.Name, "") != ptr.Deref(w.Name, "") {
			return false
		}
	}
	return true
}

// NeedsReferenceGrant reports whether HTTPRoutes of routeNamespace need a ReferenceGrant to
// reach the auth Service: only when it lives in another namespace.
func NeedsReferenceGrant(opts Options, routeNamespace string) bool {
	return routeNamespace != opts.AuthServiceNamespace
}

// PatchOp is one RFC 6902 JSON patch operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// WiringOps returns the JSON patch operations that make the rules of route what DesiredRules
// says, touching nothing but filter entries: claimguard's filters are removed one by one and
// owner's filter is added first where it is not already. The rules are an atomic list, so a
// rewrite of the whole list from claimguard's Go types would drop every field of a newer
// Gateway API release those types do not know; entry-level operations keep them. The caller
// adds a resourceVersion precondition: the indices are those of route as read.
func WiringOps(opts Options, owner *authv1alpha1.JWTPolicy, route *gatewayv1.HTTPRoute) []PatchOp {
	var want gatewayv1.HTTPRouteFilter
	if owner != nil {
		want = ExternalAuthFilter(opts, owner)
	}
	var ops []PatchOp
	for i := range route.Spec.Rules {
		fs := route.Spec.Rules[i].Filters
		base := fmt.Sprintf("/spec/rules/%d/filters", i)
		keepFirst := owner != nil && len(fs) > 0 && SameFilter(route.Namespace, &fs[0], &want)
		var remove []int
		for j := range fs {
			if _, ours := ClaimguardFilterPolicy(opts, route.Namespace, &fs[j]); ours && (j > 0 || !keepFirst) {
				remove = append(remove, j)
			}
		}
		left := len(fs) - len(remove)
		if owner == nil && left == 0 && len(remove) > 0 {
			ops = append(ops, PatchOp{Op: "remove", Path: base})
			continue
		}
		for k := len(remove) - 1; k >= 0; k-- {
			ops = append(ops, PatchOp{Op: "remove", Path: fmt.Sprintf("%s/%d", base, remove[k])})
		}
		if owner != nil && !keepFirst {
			ops = append(ops, addFirst(base, left, want))
		}
	}
	return ops
}

// MissingFilterOps returns the operations that add owner's filter first to every rule of
// route that carries no filter of claimguard at all: what the mutating webhook adds. A rule
// with a filter of claimguard that is not owner's, or not first, is left for the validating
// webhook to judge.
func MissingFilterOps(opts Options, owner *authv1alpha1.JWTPolicy, route *gatewayv1.HTTPRoute) []PatchOp {
	want := ExternalAuthFilter(opts, owner)
	var ops []PatchOp
	for i := range route.Spec.Rules {
		fs := route.Spec.Rules[i].Filters
		if slices.ContainsFunc(fs, func(f gatewayv1.HTTPRouteFilter) bool {
			_, ours := ClaimguardFilterPolicy(opts, route.Namespace, &f)
			return ours
		}) {
			continue
		}
		ops = append(ops, addFirst(fmt.Sprintf("/spec/rules/%d/filters", i), len(fs), want))
	}
	return ops
}

// addFirst adds f as the first filter of a list that holds n filters. An empty list is
// replaced whole ("add" to an existing member replaces it), so it does not matter whether the
// stored rule has an empty list or none.
func addFirst(base string, n int, f gatewayv1.HTTPRouteFilter) PatchOp {
	if n == 0 {
		return PatchOp{Op: "add", Path: base, Value: []gatewayv1.HTTPRouteFilter{f}}
	}
	return PatchOp{Op: "add", Path: base + "/0", Value: f}
}
