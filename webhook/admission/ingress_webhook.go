package admission

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

// +kubebuilder:webhook:path=/mutate-networking-k8s-io-v1-ingress,mutating=true,failurePolicy=fail,sideEffects=None,groups=networking.k8s.io,resources=ingresses,verbs=create;update,versions=v1,name=mingress.claimguard.dev,admissionReviewVersions=v1,reinvocationPolicy=IfNeeded,serviceName=claimguard-webhook-service,serviceNamespace=claimguard-system
// +kubebuilder:webhook:path=/validate-networking-k8s-io-v1-ingress,mutating=false,failurePolicy=fail,sideEffects=None,groups=networking.k8s.io,resources=ingresses,verbs=create;update,versions=v1,name=vingress.claimguard.dev,admissionReviewVersions=v1,serviceName=claimguard-webhook-service,serviceNamespace=claimguard-system
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// VerbExempt is the verb a user needs on jwtpolicies.auth.claimguard.dev in a namespace to
// exempt an Ingress of that namespace from the guard.
const VerbExempt = "exempt"

// guardScope is what the Ingress webhooks share: how to read the namespace and whom to trust.
type guardScope struct {
	// Reader reads JWTPolicies, IngressClasses and Namespaces (the manager's cache).
	Reader client.Reader
	// APIReader reads a Namespace the cache does not hold yet (nil: none). The API server calls
	// the webhooks only for namespaces the leader has labelled, which this replica's cache may
	// not have caught up with by a few milliseconds.
	APIReader client.Reader
	// Wiring says what claimguard writes on a guarded Ingress.
	Wiring wiring.Options
	// TrustedUsers are the usernames whose Ingress writes the guard leaves alone: claimguard's
	// own service account, whose reconciler hands Ingresses over and unwires them.
	TrustedUsers []string
}

func (s *guardScope) trusted(req admission.Request) bool {
	return slices.Contains(s.TrustedUsers, req.UserInfo.Username)
}

// load reads what the guard decides with: the namespace's policies and the IngressClasses.
func (s *guardScope) load(ctx context.Context, namespace string) (*wiring.Ownership, *wiring.Classifier, error) {
	var pols authv1alpha1.JWTPolicyList
	if err := s.Reader.List(ctx, &pols, client.InNamespace(namespace)); err != nil {
		return nil, nil, fmt.Errorf("claimguard could not read the JWTPolicies of namespace %s, so it cannot check this change; retry: %w", namespace, err)
	}
	var classes networkingv1.IngressClassList
	if err := s.Reader.List(ctx, &classes); err != nil {
		return nil, nil, fmt.Errorf("claimguard could not read the IngressClasses, so it cannot check this change; retry: %w", err)
	}
	return wiring.NewOwnership(pols.Items), wiring.NewClassifier(s.Wiring, classes.Items), nil
}

// IngressMutator adds claimguard's wiring to an Ingress that a policy selects when it is created
// or updated, so that the first version anyone reads of a new Ingress is already guarded: there
// is no window before the reconciler's first pass. It computes the wiring exactly as the
// reconciler does (internal/wiring). It only fills in what is missing: a value the request sets
// or removes is left for IngressValidator to judge, so a removal is refused with a reason
// rather than silently undone. For Traefik the Middleware may not exist yet; the reference is
// added anyway, and Traefik refuses to route through a missing middleware: fail closed.
type IngressMutator struct {
	guardScope
}

var _ admission.Defaulter[*networkingv1.Ingress] = (*IngressMutator)(nil)

// Default adds the missing wiring.
func (m *IngressMutator) Default(ctx context.Context, ing *networkingv1.Ingress) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return err
	}
	if m.trusted(req) || !ing.DeletionTimestamp.IsZero() {
		return nil
	}
	var old *networkingv1.Ingress
	if req.Operation == admissionv1.Update {
		old = &networkingv1.Ingress{}
		if err := decodeRaw(req.OldObject, old); err != nil {
			return fmt.Errorf("decode the old Ingress: %w", err)
		}
	}
	own, cls, err := m.load(ctx, req.Namespace)
	if err != nil {
		return err
	}
	owner := own.Owner(ing)
	kind := cls.Classify(ing).Kind
	if owner == nil || kind == wiring.Unsupported {
		return nil
	}
	added := addWiring(m.Wiring, owner, kind, old, ing)
	if len(added) > 0 {
		ctrl.LoggerFrom(ctx).V(1).Info("Wiring Ingress at admission", "Ingress", klog.KRef(req.Namespace, ingressName(ing)), "JWTPolicy", owner.Name, "annotations", added)
	}
	return nil
}

// addWiring adds to ing the annotations of owner's wiring that it lacks and that old (the
// stored version, nil on create) lacked too, and returns their keys.
func addWiring(opts wiring.Options, owner *authv1alpha1.JWTPolicy, kind wiring.Kind, old, ing *networkingv1.Ingress) []string {
	desired := wiring.DesiredAnnotations(opts, owner, ing, kind, nil)
	var oldAnn map[string]string
	if old != nil {
		oldAnn = old.Annotations
	}
	var added []string
	for _, key := range sortedKeys(desired) {
		if key == wiring.AnnotationTraefikRouterMiddlewares {
			ref := wiring.MiddlewareRef(owner.Namespace, owner.Name)
			if firstIs(ing.Annotations[key], ref) || firstIs(oldAnn[key], ref) {
				continue
			}
		} else {
			if _, ok := ing.Annotations[key]; ok {
				continue
			}
			if _, ok := oldAnn[key]; ok {
				continue
			}
		}
		if ing.Annotations == nil {
			ing.Annotations = map[string]string{}
		}
		ing.Annotations[key] = desired[key]
		added = append(added, key)
	}
	return added
}

func firstIs(middlewares, ref string) bool {
	e := wiring.MiddlewareEntries(middlewares)
	return len(e) > 0 && e[0] == ref
}

// IngressValidator is the Ingress guard: in a namespace that a JWTPolicy guards it refuses
// changes that remove or alter claimguard's wiring, add a bypass, or take a guarded Ingress out
// of its policy's selection (see judge). An Ingress or Namespace labelled
// auth.claimguard.dev/exempt=true is not guarded; only users allowed the verb "exempt" on
// jwtpolicies in the namespace may add that label to an Ingress, and an exempt Ingress changed
// by anyone else is judged as if it were not exempt.
type IngressValidator struct {
	guardScope
	// Authorizer creates SubjectAccessReviews (a live client: reviews are not cached).
	Authorizer client.Client
}

var _ admission.Validator[*networkingv1.Ingress] = (*IngressValidator)(nil)

// ValidateCreate guards a new Ingress.
func (v *IngressValidator) ValidateCreate(ctx context.Context, ing *networkingv1.Ingress) (admission.Warnings, error) {
	return v.validate(ctx, nil, ing)
}

// ValidateUpdate guards a changed Ingress.
func (v *IngressValidator) ValidateUpdate(ctx context.Context, old, ing *networkingv1.Ingress) (admission.Warnings, error) {
	return v.validate(ctx, old, ing)
}

// ValidateDelete allows every deletion: a deleted Ingress serves nothing.
func (v *IngressValidator) ValidateDelete(context.Context, *networkingv1.Ingress) (admission.Warnings, error) {
	return nil, nil
}

func (v *IngressValidator) validate(ctx context.Context, old, ing *networkingv1.Ingress) (admission.Warnings, error) {
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
	}
	skip, exempt, err := v.exemption(ctx, v.Authorizer, req, "Ingress", ingressName(ing), ing.Labels, oldLabels)
	if skip || err != nil {
		return nil, err
	}
	own, cls, err := v.load(ctx, req.Namespace)
	if err != nil {
		return nil, err
	}
	verdict := judge(&change{old: old, new: ing, own: own, cls: cls, opts: v.Wiring})
	warnings := make(admission.Warnings, 0, len(verdict.warnings))
	for _, w := range verdict.warnings {
		warnings = append(warnings, truncate(fmt.Sprintf("Ingress %s/%s: %s", req.Namespace, ingressName(ing), w), maxWarning))
	}
	if len(verdict.refusals) == 0 {
		return warnings, nil
	}
	msg := refusalMessage(ing, verdict)
	if exempt {
		msg += fmt.Sprintf(" The Ingress is exempt, but only for users allowed the verb %q on jwtpolicies in namespace %s.", VerbExempt, req.Namespace)
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Refused Ingress change", "Ingress", klog.KRef(req.Namespace, ingressName(ing)), "JWTPolicy", verdict.policy.Name,
		"user", req.UserInfo.Username, "refusals", len(verdict.refusals))
	return warnings, errors.New(msg)
}

// exemption applies the exemption label to a change of a guarded object of kind (Ingress,
// HTTPRoute): skip when the guard does not judge it (its namespace is exempt, or it is exempt
// and the requester may exempt), an error when the change cannot be judged or adds the label
// without that permission, and exempt when it is labelled exempt by someone who may not
// exempt: then it is judged as if it were not (the exemption covers the administrator's vetted
// changes, not the next user's), and the refusal says so.
func (s *guardScope) exemption(ctx context.Context, authz client.Client, req admission.Request, kind, name string, labels, oldLabels map[string]string) (skip, exempt bool, err error) {
	ns := &corev1.Namespace{}
	err = s.Reader.Get(ctx, client.ObjectKey{Name: req.Namespace}, ns)
	if apierrors.IsNotFound(err) && s.APIReader != nil {
		err = s.APIReader.Get(ctx, client.ObjectKey{Name: req.Namespace}, ns)
	}
	if err != nil {
		return false, false, fmt.Errorf("claimguard could not read namespace %s, so it cannot check this change; retry: %w", req.Namespace, err)
	}
	if ns.Labels[wiring.LabelExempt] == "true" {
		return true, false, nil
	}
	if labels[wiring.LabelExempt] != "true" {
		return false, false, nil
	}
	ok, err := mayExempt(ctx, authz, req)
	if err != nil {
		return false, false, fmt.Errorf("claimguard could not check whether %s may exempt %s; retry: %w", req.UserInfo.Username, kindPlural(kind), err)
	}
	switch {
	case ok:
		return true, true, nil
	case oldLabels[wiring.LabelExempt] != "true":
		return false, true, fmt.Errorf("claimguard refused this change to %s %s/%s: it adds the label %s=true, which takes the %s out of the guard. "+
			"Only users allowed the verb %q on resource jwtpolicies (group %s) in namespace %s may exempt %s; ask a cluster administrator",
			kind, req.Namespace, name, wiring.LabelExempt, kind, VerbExempt, authv1alpha1.GroupVersion.Group, req.Namespace, article(kind))
	}
	// Kept by someone who may not exempt: the exemption does not cover their change.
	return false, true, nil
}

// kindPlural is "Ingresses" or "HTTPRoutes".
func kindPlural(kind string) string {
	if kind == "Ingress" {
		return "Ingresses"
	}
	return kind + "s"
}

// article is "an Ingress" or "an HTTPRoute".
func article(kind string) string { return "an " + kind }

// mayExempt asks authz (a live client: reviews are not cached) whether the requester may use
// the verb "exempt" on jwtpolicies in the request's namespace. A cluster-admin may; a tenant
// with an edit role may not.
func mayExempt(ctx context.Context, authz client.Client, req admission.Request) (bool, error) {
	extra := make(map[string]authorizationv1.ExtraValue, len(req.UserInfo.Extra))
	for k, val := range req.UserInfo.Extra {
		extra[k] = authorizationv1.ExtraValue(val)
	}
	sar := &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   req.UserInfo.Username,
			UID:    req.UserInfo.UID,
			Groups: req.UserInfo.Groups,
			Extra:  extra,
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: req.Namespace,
				Verb:      VerbExempt,
				Group:     authv1alpha1.GroupVersion.Group,
				Resource:  "jwtpolicies",
			},
		},
	}
	if err := authz.Create(ctx, sar); err != nil {
		return false, err
	}
	return sar.Status.Allowed && !sar.Status.Denied, nil
}

// validUsername reports whether s looks like a service-account username.
func validUsername(s string) bool {
	return strings.HasPrefix(s, "system:serviceaccount:") && strings.Count(s, ":") == 3
}
