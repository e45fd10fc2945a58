package admission

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/controllers"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/wiring"
)

// +kubebuilder:webhook:path=/mutate-auth-claimguard-dev-v1alpha1-jwtpolicy,mutating=true,failurePolicy=fail,sideEffects=None,groups=auth.claimguard.dev,resources=jwtpolicies,verbs=create;update,versions=v1alpha1,name=mjwtpolicy.claimguard.dev,admissionReviewVersions=v1,serviceName=claimguard-webhook-service,serviceNamespace=claimguard-system
// +kubebuilder:webhook:path=/validate-auth-claimguard-dev-v1alpha1-jwtpolicy,mutating=false,failurePolicy=fail,sideEffects=None,groups=auth.claimguard.dev,resources=jwtpolicies,verbs=create;update,versions=v1alpha1,name=vjwtpolicy.claimguard.dev,admissionReviewVersions=v1,serviceName=claimguard-webhook-service,serviceNamespace=claimguard-system
// +kubebuilder:webhookconfiguration:mutating=true,name=claimguard-mutating-webhook-configuration
// +kubebuilder:webhookconfiguration:mutating=false,name=claimguard-validating-webhook-configuration

// maxWarning is the longest admission warning claimguard sends: the API server may cut longer
// ones (at 256 characters) without a mark.
const maxWarning = 256

// JWTPolicyDefaulter writes the defaults the engine would apply into a stored policy, so that
// `kubectl get -o yaml` shows the effective settings. The defaults are fields so that tests read
// them; NewJWTPolicyDefaulter fills them with the engine's.
type JWTPolicyDefaulter struct {
	// Algorithms is the allow-list given to an issuer that names none.
	Algorithms []authv1alpha1.Algorithm
	// TokenSources is where the token is read from when the policy names no source.
	TokenSources []authv1alpha1.TokenSource
}

var _ admission.Defaulter[*authv1alpha1.JWTPolicy] = (*JWTPolicyDefaulter)(nil)

// NewJWTPolicyDefaulter returns the engine's defaults: RS256 and ES256, and the Authorization
// header with the "Bearer " scheme.
func NewJWTPolicyDefaulter() *JWTPolicyDefaulter {
	return &JWTPolicyDefaulter{
		Algorithms:   slices.Clone(authv1alpha1.DefaultAlgorithms),
		TokenSources: []authv1alpha1.TokenSource{{Header: &authv1alpha1.HeaderTokenSource{Name: "Authorization", Prefix: "Bearer "}}},
	}
}

// Default fills absent algorithms and tokenSources. Updates that leave the spec as it was (a
// finalizer, a label, deletion) are left alone, so that a policy stored before these defaults
// existed does not change under the controller's metadata writes.
func (d *JWTPolicyDefaulter) Default(ctx context.Context, p *authv1alpha1.JWTPolicy) error {
	if !p.DeletionTimestamp.IsZero() {
		return nil
	}
	if req, err := admission.RequestFromContext(ctx); err == nil && req.Operation == admissionv1.Update {
		old := &authv1alpha1.JWTPolicy{}
		if err := decodeRaw(req.OldObject, old); err == nil && equality.Semantic.DeepEqual(old.Spec, p.Spec) {
			return nil
		}
	}
	d.apply(&p.Spec)
	return nil
}

func (d *JWTPolicyDefaulter) apply(spec *authv1alpha1.JWTPolicySpec) {
	for i := range spec.Issuers {
		if len(spec.Issuers[i].Algorithms) == 0 {
			spec.Issuers[i].Algorithms = slices.Clone(d.Algorithms)
		}
	}
	if len(spec.TokenSources) == 0 {
		for _, ts := range d.TokenSources {
			spec.TokenSources = append(spec.TokenSources, *ts.DeepCopy())
		}
	}
}

// JWTPolicyValidator refuses a policy that does not compile, with the same compile step as the
// reconciler and the forward-auth server (CEL rules, regular expressions, inline keys, claim
// paths, https key URLs), plus what the compile step does not look at: the label selectors. It
// warns, without refusing, about what is valid but will not work as written: a secretRef whose
// Secret or key does not exist yet, and another policy selecting the same Ingresses.
type JWTPolicyValidator struct {
	// Reader reads Secrets, JWTPolicies and Ingresses (the manager's cache).
	Reader client.Reader
	// AllowInsecureHTTP allows http:// key URLs and issuers (--allow-insecure-jwks-http).
	AllowInsecureHTTP bool
	// Now is the clock that dates a policy being created, for the oldest-wins rule; nil: time.Now.
	Now func() time.Time
}

var _ admission.Validator[*authv1alpha1.JWTPolicy] = (*JWTPolicyValidator)(nil)

// ValidateCreate checks a new policy.
func (v *JWTPolicyValidator) ValidateCreate(ctx context.Context, p *authv1alpha1.JWTPolicy) (admission.Warnings, error) {
	return v.validate(ctx, p)
}

// ValidateUpdate checks a changed spec. An update that leaves the spec as it was (status,
// finalizers, labels) passes: a policy stored before a check existed must still be deletable.
func (v *JWTPolicyValidator) ValidateUpdate(ctx context.Context, old, p *authv1alpha1.JWTPolicy) (admission.Warnings, error) {
	if !p.DeletionTimestamp.IsZero() || equality.Semantic.DeepEqual(old.Spec, p.Spec) {
		return nil, nil
	}
	return v.validate(ctx, p)
}

// ValidateDelete allows every deletion: the finalizer unwires the Ingresses.
func (v *JWTPolicyValidator) ValidateDelete(context.Context, *authv1alpha1.JWTPolicy) (admission.Warnings, error) {
	return nil, nil
}

func (v *JWTPolicyValidator) validate(ctx context.Context, p *authv1alpha1.JWTPolicy) (admission.Warnings, error) {
	_, errs := policy.Compile(&p.Spec, policy.CompileOptions{Namespace: p.Namespace, Name: p.Name, AllowInsecureHTTP: v.AllowInsecureHTTP})
	spec := field.NewPath("spec")
	errs = append(errs, validateSelector(p.Spec.IngressSelector, spec.Child("ingressSelector"), "Ingresses")...)
	errs = append(errs, validateSelector(p.Spec.RouteSelector, spec.Child("routeSelector"), "HTTPRoutes")...)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(authv1alpha1.GroupVersion.WithKind("JWTPolicy").GroupKind(), p.Name, errs)
	}
	var warnings admission.Warnings
	warnings = append(warnings, v.secretWarnings(ctx, p)...)
	warnings = append(warnings, v.overlapWarnings(ctx, p)...)
	for i := range warnings {
		warnings[i] = truncate(warnings[i], maxWarning)
	}
	return warnings, nil
}

// validateSelector checks a label selector the way the API server checks its own (the CRD
// schema cannot: operators and values are free strings there).
func validateSelector(sel *metav1.LabelSelector, fp *field.Path, what string) field.ErrorList {
	if sel == nil {
		return nil
	}
	errs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, fp)
	if len(errs) == 0 {
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			errs = append(errs, field.Invalid(fp, field.OmitValueType{}, err.Error()))
		}
	}
	for _, e := range errs {
		e.Detail = strings.TrimSuffix(e.Detail, ".") + fmt.Sprintf("; fix the selector: as it is, the policy would select no %s", what)
	}
	return errs
}

// secretWarnings warns about secretRefs whose Secret or key does not exist (yet): valid, but
// until it does every token of that issuer is denied with keys_unavailable.
func (v *JWTPolicyValidator) secretWarnings(ctx context.Context, p *authv1alpha1.JWTPolicy) []string {
	var out []string
	for i, is := range p.Spec.Issuers {
		ref := is.JWKS.SecretRef
		if ref == nil {
			continue
		}
		at := fmt.Sprintf("spec.issuers[%d].jwks.secretRef", i)
		fix := fmt.Sprintf("create it with key %q holding the JWKS; until then this issuer's tokens are denied (keys_unavailable)", ref.Key)
		sec := &corev1.Secret{}
		err := v.Reader.Get(ctx, client.ObjectKey{Namespace: p.Namespace, Name: ref.Name}, sec)
		switch {
		case apierrors.IsNotFound(err):
			out = append(out, fmt.Sprintf("%s: Secret %s does not exist yet in namespace %s; %s", at, ref.Name, p.Namespace, fix))
		case err != nil:
			ctrl.LoggerFrom(ctx).V(1).Info("Could not read a referenced Secret for a warning", "error", err.Error())
		case slices.Contains(controllers.UnreadSecretTypes, sec.Type):
			out = append(out, fmt.Sprintf("%s: Secret %s is of type %s, which claimguard does not read; use an Opaque Secret", at, ref.Name, sec.Type))
		default:
			if _, ok := sec.Data[ref.Key]; !ok {
				out = append(out, fmt.Sprintf("%s: Secret %s has no key %q; add the key holding the JWKS; until then this issuer's tokens are denied (keys_unavailable)", at, ref.Name, ref.Key))
			}
		}
	}
	return out
}

// overlapWarnings names the other policies of the namespace that select Ingresses this one
// selects, the Ingresses, and which policy wins them (the oldest, then by name).
func (v *JWTPolicyValidator) overlapWarnings(ctx context.Context, p *authv1alpha1.JWTPolicy) []string {
	mine, err := wiring.IngressSelector(p)
	if err != nil {
		return nil
	}
	var pols authv1alpha1.JWTPolicyList
	var ings networkingv1.IngressList
	if err := v.Reader.List(ctx, &pols, client.InNamespace(p.Namespace)); err != nil {
		return nil
	}
	if err := v.Reader.List(ctx, &ings, client.InNamespace(p.Namespace)); err != nil {
		return nil
	}
	me := p.DeepCopy()
	if me.CreationTimestamp.IsZero() {
		now := time.Now
		if v.Now != nil {
			now = v.Now
		}
		// The API server stamps the creation time after admission, in whole seconds.
		me.CreationTimestamp = metav1.NewTime(now().Truncate(time.Second))
	}
	slices.SortFunc(pols.Items, func(a, b authv1alpha1.JWTPolicy) int { return wiring.ComparePolicies(&a, &b) })
	var out []string
	for i := range pols.Items {
		q := &pols.Items[i]
		if q.Name == p.Name || !q.DeletionTimestamp.IsZero() {
			continue
		}
		theirs, err := wiring.IngressSelector(q)
		if err != nil {
			continue
		}
		var both []string
		for _, ing := range ings.Items {
			set := labels.Set(ing.Labels)
			if mine.Matches(set) && theirs.Matches(set) {
				both = append(both, ing.Name)
			}
		}
		if len(both) == 0 && mine.String() != theirs.String() {
			continue
		}
		winner := "JWTPolicy " + q.Name + " is older and keeps them; this policy will report Conflict"
		if wiring.ComparePolicies(me, q) < 0 {
			winner = "this policy is older and takes them over from " + q.Name
		}
		what := "the same Ingresses (identical selectors)"
		if len(both) > 0 {
			what = "Ingress " + listNames(both, 3)
		}
		out = append(out, fmt.Sprintf("spec.ingressSelector: JWTPolicy %s also selects %s; %s. Narrow one of the ingressSelectors", q.Name, what, winner))
	}
	return out
}

func listNames(names []string, n int) string {
	slices.Sort(names)
	if len(names) <= n {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:n], ", "), len(names)-n)
}

// decodeRaw decodes the JSON of an admission request's object.
func decodeRaw(raw runtime.RawExtension, into runtime.Object) error {
	if len(raw.Raw) == 0 {
		return errors.New("empty object")
	}
	return json.Unmarshal(raw.Raw, into)
}
