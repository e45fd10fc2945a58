package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

// +kubebuilder:webhook:path=/mutate-gateway-networking-k8s-io-v1-httproute,mutating=true,failurePolicy=fail,sideEffects=None,groups=gateway.networking.k8s.io,resources=httproutes,verbs=create;update,versions=v1,name=mhttproute.claimguard.dev,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded,serviceName=claimguard-webhook-service,serviceNamespace=claimguard-system
// +kubebuilder:webhook:path=/validate-gateway-networking-k8s-io-v1-httproute,mutating=false,failurePolicy=fail,sideEffects=None,groups=gateway.networking.k8s.io,resources=httproutes,verbs=create;update,versions=v1,name=vhttproute.claimguard.dev,admissionReviewVersions=v1,serviceName=claimguard-webhook-service,serviceNamespace=claimguard-system

// Paths of the HTTPRoute webhooks, as controller-runtime names them for the kind.
const (
	HTTPRouteMutatePath   = "/mutate-gateway-networking-k8s-io-v1-httproute"
	HTTPRouteValidatePath = "/validate-gateway-networking-k8s-io-v1-httproute"
)

// RouteSupport reports whether the API server's HTTPRoutes can carry the ExternalAuth filter
// (the experimental channel of the Gateway API). controllers.GatewayAPI implements it.
type RouteSupport interface {
	ExternalAuthServed(ctx context.Context) (bool, error)
}

// routeScope is what both HTTPRoute webhooks share.
type routeScope struct {
	guardScope
	// Gateway says whether routes can carry the filter. Without it nothing is wired or judged:
	// the API server would refuse the filter, and the policy's IngressesWired condition already
	// says that the selected routes are not guarded (ExternalAuthUnsupported).
	Gateway RouteSupport
}

// guarding returns the namespace's ownership when routes can be wired, nil when they cannot.
func (s *routeScope) guarding(ctx context.Context, namespace string) (*wiring.Ownership, error) {
	ok, err := s.Gateway.ExternalAuthServed(ctx)
	if err != nil {
		return nil, fmt.Errorf("claimguard could not tell whether HTTPRoutes can carry its ExternalAuth filter, so it cannot check this change; retry: %w", err)
	}
	if !ok {
		return nil, nil
	}
	var pols authv1alpha1.JWTPolicyList
	if err := s.Reader.List(ctx, &pols, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("claimguard could not read the JWTPolicies of namespace %s, so it cannot check this change; retry: %w", namespace, err)
	}
	return wiring.NewOwnership(pols.Items), nil
}

// HTTPRouteMutator adds claimguard's ExternalAuth filter, first, to every rule that has none of
// an HTTPRoute a policy selects, at create and update, so that the first version anyone reads
// of a new route is already guarded, and a rule added later is too.
//
// Unlike the Ingress mutator it also puts back a filter the request removes: HTTPRoute rules
// are an atomic list, and kubectl apply, Helm and GitOps tools send the rules of their manifest,
// which do not carry the filter, on every change of any rule. Refusing those would break them;
// the route stays guarded either way. A filter of claimguard the request alters is left for
// HTTPRouteValidator to refuse.
//
// It is a raw handler, not a typed defaulter: it patches the request's own JSON with
// operations on filter entries only (wiring.MissingFilterOps), so fields of a newer Gateway
// API than claimguard's Go types, which a typed round trip would drop, are kept.
type HTTPRouteMutator struct {
	routeScope
	decoder admission.Decoder
}

var _ admission.Handler = (*HTTPRouteMutator)(nil)

// Handle answers one admission request for an HTTPRoute.
func (m *HTTPRouteMutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	ctx = admission.NewContextWithRequest(ctx, req)
	if m.trusted(req) {
		return admission.Allowed("")
	}
	route := &gatewayv1.HTTPRoute{}
	if err := m.decoder.DecodeRaw(req.Object, route); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode the HTTPRoute: %w", err))
	}
	route.Namespace = req.Namespace
	if !route.DeletionTimestamp.IsZero() {
		return admission.Allowed("")
	}
	own, err := m.guarding(ctx, req.Namespace)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if own == nil {
		return admission.Allowed("")
	}
	owner := own.RouteOwner(route)
	if owner == nil {
		return admission.Allowed("")
	}
	ops := wiring.MissingFilterOps(m.Wiring, owner, route)
	if len(ops) == 0 {
		return admission.Allowed("")
	}
	patched, err := wiring.ApplyOps(req.Object.Raw, ops)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("add claimguard's filter to HTTPRoute %s/%s: %w", req.Namespace, route.Name, err))
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Wiring HTTPRoute at admission", "HTTPRoute", klog.KRef(req.Namespace, objectName(route.Name, route.GenerateName)),
		"JWTPolicy", owner.Name, "rules", len(ops))
	return admission.PatchResponseFromRaw(req.Object.Raw, patched)
}

// HTTPRouteValidator is the HTTPRoute guard (see judgeRoute), with the exemption rules of the
// Ingress guard: an HTTPRoute or Namespace labelled auth.claimguard.dev/exempt=true is not
// guarded; only users allowed the verb "exempt" on jwtpolicies in the namespace may add that
// label to a route, and an exempt route changed by anyone else is judged as if it were not
// exempt.
type HTTPRouteValidator struct {
	routeScope
	// Authorizer creates SubjectAccessReviews (a live client: reviews are not cached).
	Authorizer client.Client
}

var _ admission.Validator[*gatewayv1.HTTPRoute] = (*HTTPRouteValidator)(nil)

// ValidateCreate guards a new HTTPRoute.
func (v *HTTPRouteValidator) ValidateCreate(ctx context.Context, route *gatewayv1.HTTPRoute) (admission.Warnings, error) {
	return v.validate(ctx, nil, route)
}

// ValidateUpdate guards a changed HTTPRoute.
func (v *HTTPRouteValidator) ValidateUpdate(ctx context.Context, old, route *gatewayv1.HTTPRoute) (admission.Warnings, error) {
	return v.validate(ctx, old, route)
}

// ValidateDelete allows every deletion: a deleted route serves nothing.
func (v *HTTPRouteValidator) ValidateDelete(context.Context, *gatewayv1.HTTPRoute) (admission.Warnings, error) {
	return nil, nil
}

func (v *HTTPRouteValidator) validate(ctx context.Context, old, route *gatewayv1.HTTPRoute) (admission.Warnings, error) {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if v.trusted(req) {
		return nil, nil
	}
	var oldLabels map[string]string
	if old != nil {
		oldLabels = old.Labels
		old.Namespace = req.Namespace
	}
	route.Namespace = req.Namespace
	name := objectName(route.Name, route.GenerateName)
	// Without the filter in the schema nothing is guarded, so neither is the exemption label.
	own, err := v.guarding(ctx, req.Namespace)
	if err != nil || own == nil {
		return nil, err
	}
	skip, exempt, err := v.exemption(ctx, v.Authorizer, req, "HTTPRoute", name, route.Labels, oldLabels)
	if skip || err != nil {
		return nil, err
	}
	verdict := judgeRoute(&routeChange{old: old, new: route, own: own, opts: v.Wiring})
	warnings := make(admission.Warnings, 0, len(verdict.warnings))
	for _, w := range verdict.warnings {
		warnings = append(warnings, truncate(fmt.Sprintf("HTTPRoute %s/%s: %s", req.Namespace, name, w), maxWarning))
	}
	if len(verdict.refusals) == 0 {
		return warnings, nil
	}
	msg := routeRefusalMessage(route, verdict)
	if exempt {
		msg += fmt.Sprintf(" The HTTPRoute is exempt, but only for users allowed the verb %q on jwtpolicies in namespace %s.", VerbExempt, req.Namespace)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Refused HTTPRoute change", "HTTPRoute", klog.KRef(req.Namespace, name), "JWTPolicy", verdict.policy.Name,
		"user", req.UserInfo.Username, "refusals", len(verdict.refusals))
	return warnings, errors.New(msg)
}
