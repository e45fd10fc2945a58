package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
	"github.com/claimguard/claimguard/internal/wiring"
)

// +kubebuilder:rbac:groups=auth.claimguard.dev,resources=jwtpolicies,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=auth.claimguard.dev,resources=jwtpolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=auth.claimguard.dev,resources=jwtpolicies/finalizers,verbs=update
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingressclasses,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=traefik.io,resources=middlewares,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// JWTPolicyReconciler writes a JWTPolicy's status (conditions, keys, boundIngresses,
// boundRoutes) and wires the Ingresses and HTTPRoutes it owns to the forward-auth endpoint. It runs on the leader only; the
// SnapshotBuilder it shares compiled policies with runs on every replica.
type JWTPolicyReconciler struct {
	client.Client
	// Cache reads Traefik Middlewares (unstructured, informer created on first use).
	Cache client.Reader
	// APIReader reads an HTTPRoute from the API server before its filters are patched (nil:
	// the cached copy is used).
	APIReader client.Reader
	// Builder compiles policies; the reconciler reads status from the very compile it serves.
	Builder *SnapshotBuilder
	// Recorder emits Events on the policy.
	Recorder events.EventRecorder
	// Wiring says where the auth Service is and which controllers are wired.
	Wiring WiringOptions
	// CRD reports whether Traefik's Middleware CRD is served.
	CRD *MiddlewareCRD
	// Gateway reports whether the Gateway API, with the ExternalAuth filter, is served.
	Gateway *GatewayAPI
	// Grants keeps the ReferenceGrants of the auth Service; its queue is fed from the route
	// and grant watches (nil: none).
	Grants *ReferenceGrantReconciler
	// Clock is injected so tests control condition times; nil: the real clock.
	Clock clock.PassiveClock
	// Timing bounds the requeue intervals.
	Timing Timing
	// MaxConcurrentReconciles is the number of policies reconciled at once (0: 4).
	MaxConcurrentReconciles int

	queue      *Enqueuer
	controller controller.Controller
	// routesWatched is set once the HTTPRoute and ReferenceGrant informers have handlers.
	routesWatched atomic.Bool
	// written maps a policy to the resourceVersion of this controller's last write of it.
	written sync.Map
}

// maxParallelApplies bounds the Ingress applies one pass runs at once.
const maxParallelApplies = 4

// scope is what one pass knows about a policy and its namespace.
type scope struct {
	policy   *authv1alpha1.JWTPolicy
	compiled *Compiled
	now      time.Time

	own     *wiring.Ownership
	classes *wiring.Classifier
	selErr  error // spec.ingressSelector is not a valid selector

	owned   []*networkingv1.Ingress // selected and owned by this policy
	release []*networkingv1.Ingress // wired to this policy but no longer its own
	lost    []string                // "ingress (JWTPolicy winner)" for the Conflict message

	routes routeScope // the same for HTTPRoutes
}

// Reconcile brings one JWTPolicy's status and wiring up to date.
func (r *JWTPolicyReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	p := &authv1alpha1.JWTPolicy{}
	if err := r.Get(ctx, req.NamespacedName, p); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.Delete(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if r.cacheBehind(p) {
		// The cache has not caught up with this controller's own last write: a pass on the
		// older copy would write again what was just written (with new condition times).
		return ctrl.Result{RequeueAfter: staleCacheRecheck}, nil
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, p)
	}
	if !controllerutil.ContainsFinalizer(p, Finalizer) {
		// The update event of this patch starts the next pass.
		orig := p.DeepCopy()
		controllerutil.AddFinalizer(p, Finalizer)
		if err := r.Patch(ctx, p, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
			return ctrl.Result{}, err
		}
		r.wrote(p)
		return ctrl.Result{}, nil
	}

	orig := p.DeepCopy()
	defer func() {
		if retErr == nil {
			p.Status.ObservedGeneration = p.Generation
		}
		if err := r.patchStatus(ctx, orig, p); err != nil {
			retErr = errors.Join(retErr, err)
		}
	}()

	compiled, err := r.Builder.Ensure(ctx, p)
	if err != nil {
		return ctrl.Result{}, err
	}
	s := &scope{policy: p, compiled: compiled, now: r.clock().Now()}
	res := r.reconcileKeys(ctx, s)
	conflictErr := r.reconcileConflicts(ctx, s)
	ingresses, ingressErr := r.reconcileIngresses(ctx, s)
	routes, routeErr := r.reconcileRoutes(ctx, s)
	setWiredCondition(s, ingresses, routes)
	errs := []error{conflictErr, ingressErr, routeErr}
	compileErr := ""
	if len(compiled.Errors) > 0 {
		compileErr = errorSummary(compiled.Errors, maxMessage)
	}
	summarizeReady(p, s.now, compileErr)
	return res, errors.Join(errs...)
}

func (r *JWTPolicyReconciler) clock() clock.PassiveClock {
	if r.Clock == nil {
		return clock.RealClock{}
	}
	return r.Clock
}

// patchStatus writes the status once, and not at all when nothing changed.
func (r *JWTPolicyReconciler) patchStatus(ctx context.Context, orig, p *authv1alpha1.JWTPolicy) error {
	if equality.Semantic.DeepEqual(orig.Status, p.Status) {
		return nil
	}
	ctrl.LoggerFrom(ctx).V(4).Info("Writing status", "JWTPolicy", klog.KObj(p))
	if err := r.Status().Patch(ctx, p, client.MergeFrom(orig)); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("write status: %w", err)
	}
	r.wrote(p)
	r.conditionEvents(orig, p)
	return nil
}

// staleCacheRecheck is how soon a pass that found the cache behind this controller's own
// write looks again; the informer usually catches up within milliseconds.
const staleCacheRecheck = 50 * time.Millisecond

// wrote records the resourceVersion of p after this controller's own write.
func (r *JWTPolicyReconciler) wrote(p *authv1alpha1.JWTPolicy) {
	r.written.Store(types.NamespacedName{Namespace: p.Namespace, Name: p.Name}, p.ResourceVersion)
}

// cacheBehind reports whether the cached p is older than this controller's last write of it
// (resourceVersions are comparable integers, k8s.io/apimachinery/pkg/util/resourceversion).
// Passes triggered by other objects' events (the Ingress updates of the pass's own applies)
// otherwise start on the copy from before the status write and write a second time.
func (r *JWTPolicyReconciler) cacheBehind(p *authv1alpha1.JWTPolicy) bool {
	key := types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
	v, ok := r.written.Load(key)
	if !ok {
		return false
	}
	cmp, err := resourceversion.CompareResourceVersion(p.ResourceVersion, v.(string))
	if err != nil || cmp >= 0 {
		r.written.CompareAndDelete(key, v)
		return false
	}
	return true
}

// conditionEvents emits a Warning when a condition turns bad (False, or Conflict True). A
// policy turning Ready gets no event of its own: the Wired event already says so, and at
// scale every Event is one more write to the API server.
func (r *JWTPolicyReconciler) conditionEvents(orig, p *authv1alpha1.JWTPolicy) {
	if r.Recorder == nil {
		return
	}
	for _, c := range p.Status.Conditions {
		bad := metav1.ConditionFalse
		if c.Type == authv1alpha1.ConditionConflict {
			bad = metav1.ConditionTrue
		}
		old := getCondition(orig.Status.Conditions, c.Type)
		changed := old == nil || old.Status != c.Status || old.Reason != c.Reason
		if changed && c.Status == bad {
			r.Recorder.Eventf(p, nil, corev1.EventTypeWarning, c.Reason, "Reconcile", "%s: %s", c.Type, c.Message)
		}
	}
}

// reconcileKeys reports every issuer's key set in status.keys and the KeysLoaded condition,
// and says when to look again: soon while a remote set is loading or failing, else at the
// resync interval (refresh events of the Fetcher usually come first).
func (r *JWTPolicyReconciler) reconcileKeys(_ context.Context, s *scope) ctrl.Result {
	p, t := s.policy, r.Timing.withDefaults()
	if len(s.compiled.Errors) > 0 {
		p.Status.Keys = nil
		setCondition(p, s.now, authv1alpha1.ConditionKeysLoaded, metav1.ConditionUnknown, authv1alpha1.ReasonInvalidSpec,
			"the policy does not compile, so no keys are loaded (see Ready)")
		return ctrl.Result{}
	}
	var (
		missing, unavailable, loading, stale []string
		remote                               bool
	)
	statuses := s.compiled.Policy.KeyStatus()
	p.Status.Keys = make([]authv1alpha1.IssuerKeys, 0, len(statuses))
	for _, ks := range statuses {
		ik := authv1alpha1.IssuerKeys{Issuer: ks.Issuer, Skipped: int32(len(ks.Skipped))}
		kids := ks.KIDs
		if len(kids) > maxStatusKIDs {
			kids = kids[:maxStatusKIDs]
		}
		ik.Kids = slices.Clone(kids)
		if !ks.LastRefresh.IsZero() {
			t := metav1.NewTime(ks.LastRefresh).Rfc3339Copy()
			ik.LastRefresh = &t
		}
		var msgs []string
		if ks.Err != nil {
			msgs = append(msgs, ks.Err.Error())
		}
		if len(ks.KIDs) > maxStatusKIDs {
			msgs = append(msgs, fmt.Sprintf("%d keys, the first %d listed", len(ks.KIDs), maxStatusKIDs))
		}
		if len(ks.Skipped) > 0 {
			sk := make([]string, 0, len(ks.Skipped))
			for _, k := range ks.Skipped {
				sk = append(sk, fmt.Sprintf("keys[%d] (kid %q): %s", k.Index, k.KID, k.Reason))
			}
			msgs = append(msgs, "skipped "+listNames(sk))
		}
		ik.Message = truncate(strings.Join(msgs, "; "), maxMessage)
		p.Status.Keys = append(p.Status.Keys, ik)

		remote = remote || ks.Source == "uri" || ks.Source == "discovery"
		label := fmt.Sprintf("issuer %q", ks.Issuer)
		if ks.Err != nil {
			label += ": " + ks.Err.Error()
		}
		switch {
		case !ks.Loaded && errors.Is(ks.Err, policy.ErrSecretNotFound):
			missing = append(missing, label)
		case !ks.Loaded && errors.Is(ks.Err, keys.ErrNotLoaded):
			loading = append(loading, fmt.Sprintf("issuer %q", ks.Issuer))
		case !ks.Loaded:
			unavailable = append(unavailable, label)
		case ks.Stale:
			stale = append(stale, label)
		}
	}
	res := ctrl.Result{}
	if remote {
		res.RequeueAfter = t.Resync
	}
	switch {
	case len(missing) > 0:
		setCondition(p, s.now, authv1alpha1.ConditionKeysLoaded, metav1.ConditionFalse, authv1alpha1.ReasonSecretNotFound,
			"create the Secret or add the key; until then requests for these issuers are denied with keys_unavailable: "+listNames(missing))
	case len(unavailable) > 0:
		res.RequeueAfter = t.KeyRecheck
		setCondition(p, s.now, authv1alpha1.ConditionKeysLoaded, metav1.ConditionFalse, authv1alpha1.ReasonKeysUnavailable,
			"key sets never loaded, requests for these issuers are denied with keys_unavailable: "+listNames(unavailable))
	case len(loading) > 0:
		res.RequeueAfter = t.KeyRecheck
		setCondition(p, s.now, authv1alpha1.ConditionKeysLoaded, metav1.ConditionUnknown, authv1alpha1.ReasonKeysLoading,
			"fetching the key sets of "+listNames(loading))
	case len(stale) > 0:
		res.RequeueAfter = t.KeyRecheck
		setCondition(p, s.now, authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysStale,
			"refresh failed, the last keys loaded are still used: "+listNames(stale))
	default:
		setCondition(p, s.now, authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysLoaded, "")
	}
	return res
}

// loadNamespace reads the policies, Ingresses and IngressClasses a pass decides with.
func (r *JWTPolicyReconciler) loadNamespace(ctx context.Context, namespace string) (*wiring.Ownership, []networkingv1.Ingress, *wiring.Classifier, error) {
	var pols authv1alpha1.JWTPolicyList
	if err := r.List(ctx, &pols, client.InNamespace(namespace)); err != nil {
		return nil, nil, nil, fmt.Errorf("list JWTPolicies: %w", err)
	}
	var ings networkingv1.IngressList
	if err := r.List(ctx, &ings, client.InNamespace(namespace)); err != nil {
		return nil, nil, nil, fmt.Errorf("list Ingresses: %w", err)
	}
	var classes networkingv1.IngressClassList
	if err := r.List(ctx, &classes); err != nil {
		return nil, nil, nil, fmt.Errorf("list IngressClasses: %w", err)
	}
	slices.SortFunc(ings.Items, func(a, b networkingv1.Ingress) int { return strings.Compare(a.Name, b.Name) })
	return wiring.NewOwnership(pols.Items), ings.Items, wiring.NewClassifier(r.Wiring, classes.Items), nil
}

// reconcileConflicts decides which selected Ingresses and HTTPRoutes this policy owns and
// reports the ones an older policy owns in the Conflict condition.
func (r *JWTPolicyReconciler) reconcileConflicts(ctx context.Context, s *scope) error {
	p := s.policy
	own, ings, classes, err := r.loadNamespace(ctx, p.Namespace)
	if err != nil {
		setCondition(p, s.now, authv1alpha1.ConditionConflict, metav1.ConditionUnknown, authv1alpha1.ReasonNotReady, "could not read the namespace: "+err.Error())
		return err
	}
	s.own, s.classes = own, classes
	var selector labels.Selector
	selector, s.selErr = wiring.IngressSelector(p)
	for i := range ings {
		ing := &ings[i]
		owner := own.Owner(ing)
		selected := s.selErr == nil && selector.Matches(labels.Set(ing.Labels))
		switch {
		case owner != nil && owner.UID == p.UID:
			s.owned = append(s.owned, ing)
		case selected && owner != nil:
			s.lost = append(s.lost, fmt.Sprintf("%s (JWTPolicy %s)", ing.Name, owner.Name))
		}
		if wiredTo(ing) == p.Name && (owner == nil || owner.UID != p.UID) {
			s.release = append(s.release, ing)
		}
	}
	routeErr := r.selectRoutes(ctx, s)
	switch {
	case len(s.lost) > 0 && len(s.routes.lost) == 0:
		setCondition(p, s.now, authv1alpha1.ConditionConflict, metav1.ConditionTrue, authv1alpha1.ReasonConflictingPolicy,
			fmt.Sprintf("%s selected by this policy %s guarded by an older policy, which wins (oldest creationTimestamp, then name); narrow spec.ingressSelector of one of them: %s",
				plural(len(s.lost), "Ingress", "Ingresses"), isAre(len(s.lost)), listNames(s.lost)))
	case len(s.routes.lost) > 0:
		setCondition(p, s.now, authv1alpha1.ConditionConflict, metav1.ConditionTrue, authv1alpha1.ReasonConflictingPolicy, routeConflictMessage(s))
	case routeErr != nil:
		setCondition(p, s.now, authv1alpha1.ConditionConflict, metav1.ConditionUnknown, authv1alpha1.ReasonNotReady, "could not read the HTTPRoutes of the namespace: "+routeErr.Error())
	default:
		setCondition(p, s.now, authv1alpha1.ConditionConflict, metav1.ConditionFalse, authv1alpha1.ReasonNoConflict, "")
	}
	return routeErr
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// reconcileIngresses wires the Ingresses this policy owns, hands over or unwires the ones it
// no longer owns, keeps its Traefik Middleware only while it is used, and reports the
// Ingresses' part of the IngressesWired condition (see setWiredCondition) and boundIngresses.
func (r *JWTPolicyReconciler) reconcileIngresses(ctx context.Context, s *scope) (wiringOutcome, error) {
	p := s.policy
	if s.own == nil {
		return wiringOutcome{metav1.ConditionUnknown, authv1alpha1.ReasonNotReady, "the namespace could not be read"}, nil
	}
	var (
		errs                          []error
		failed, unsupported, noCRD    []string
		bound                         int32
		needMiddleware, middlewareErr bool
	)
	traefik, err := r.CRD.Served(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	type job struct {
		ing  *networkingv1.Ingress
		kind wiring.Kind
		why  string // why an unsupported Ingress is not wired
	}
	var jobs []job
	for _, ing := range s.owned {
		cl := s.classes.Classify(ing)
		switch {
		case cl.Kind == wiring.Unsupported:
			unsupported = append(unsupported, fmt.Sprintf("%s: %s", ing.Name, cl.Problem))
		case cl.Kind == wiring.Traefik && !traefik:
			// Left as it is: a reference to a Middleware that no longer exists keeps the
			// route closed, removing it would open the route.
			noCRD = append(noCRD, ing.Name)
			continue
		case cl.Kind == wiring.Traefik:
			needMiddleware = true
			if middlewareErr {
				failed = append(failed, ing.Name+": its Middleware could not be applied")
				continue
			}
			if err := r.ensureMiddleware(ctx, p); err != nil {
				middlewareErr = true
				failed = append(failed, fmt.Sprintf("%s: %v", ing.Name, err))
				errs = append(errs, err)
				continue
			}
		}
		jobs = append(jobs, job{ing: ing, kind: cl.Kind, why: cl.Problem})
	}
	// The applies are independent; a few at a time keep a policy with many Ingresses from
	// taking one round trip per Ingress.
	changed := make([]bool, len(jobs))
	applyErrs := make([]error, len(jobs))
	var g errgroup.Group
	g.SetLimit(maxParallelApplies)
	for i, j := range jobs {
		g.Go(func() error {
			changed[i], applyErrs[i] = r.applyWiring(ctx, p, j.ing, j.kind)
			return nil
		})
	}
	_ = g.Wait()
	var wired, unwired []string
	for i, j := range jobs {
		switch {
		case applyErrs[i] != nil:
			failed = append(failed, fmt.Sprintf("%s: %v", j.ing.Name, applyErrs[i]))
			errs = append(errs, applyErrs[i])
		case j.kind == wiring.Unsupported:
			if changed[i] {
				unwired = append(unwired, fmt.Sprintf("%s (%s)", j.ing.Name, j.why))
			}
		default:
			bound++
			if changed[i] {
				wired = append(wired, j.ing.Name)
			}
		}
	}
	// One Event per pass and kind of change, not one per Ingress.
	switch {
	case len(wired) == 1:
		r.event(p, nil, corev1.EventTypeNormal, "Wired", "Wire", "Ingress %s now checks requests at %s", wired[0], r.Wiring.AuthURL(p.Namespace, p.Name))
	case len(wired) > 1:
		r.event(p, nil, corev1.EventTypeNormal, "Wired", "Wire", "%d Ingresses now check requests at %s: %s", len(wired), r.Wiring.AuthURL(p.Namespace, p.Name), listNames(wired))
	}
	if len(unwired) > 0 {
		r.event(p, nil, corev1.EventTypeWarning, "Unwired", "Unwire", "%s no longer wired: %s",
			plural(len(unwired), "Ingress is", "Ingresses are"), listNames(unwired))
	}
	if err := r.releaseIngresses(ctx, p, s.own, s.classes, s.release, traefik); err != nil {
		errs = append(errs, err)
	}
	// Only once no Ingress refers to the Middleware any more (the releases above succeeded).
	if traefik && !needMiddleware && len(errs) == 0 {
		if err := r.deleteMiddleware(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	p.Status.BoundIngresses = bound

	var out wiringOutcome
	switch {
	case s.selErr != nil:
		out = wiringOutcome{metav1.ConditionFalse, authv1alpha1.ReasonInvalidSpec,
			s.selErr.Error() + "; fix the selector, until then the policy selects no Ingress"}
	case len(failed) > 0:
		out = wiringOutcome{metav1.ConditionFalse, authv1alpha1.ReasonWiringFailed,
			fmt.Sprintf("could not wire %s (retrying): %s", plural(len(failed), "Ingress", "Ingresses"), listNames(failed))}
	case len(noCRD) > 0:
		out = wiringOutcome{metav1.ConditionFalse, authv1alpha1.ReasonMiddlewareCRDMissing,
			fmt.Sprintf("%s served by Traefik, but the Middleware CRD (middlewares.traefik.io, v1alpha1) is not installed; install Traefik's CRDs and the %s will be wired: %s",
				plural(len(noCRD), "Ingress is", "Ingresses are"), pick(len(noCRD), "Ingress", "Ingresses"), listNames(noCRD))}
	case len(unsupported) > 0:
		out = wiringOutcome{metav1.ConditionFalse, authv1alpha1.ReasonUnsupportedIngressClass,
			fmt.Sprintf("%s cannot be wired and %s NOT guarded; use an ingress-nginx or Traefik IngressClass (or add the controller name with --nginx-controller-names / --traefik-controller-names): %s",
				plural(len(unsupported), "Ingress", "Ingresses"), isAre(len(unsupported)), listNames(unsupported))}
	case len(s.owned) == 0 && len(s.lost) > 0:
		out = wiringOutcome{metav1.ConditionTrue, authv1alpha1.ReasonWired,
			fmt.Sprintf("no Ingress wired: every selected Ingress belongs to an older policy (see Conflict)")}
	case len(s.owned) == 0:
		out = wiringOutcome{metav1.ConditionTrue, authv1alpha1.ReasonNothingSelected,
			fmt.Sprintf("spec.ingressSelector matches no Ingress in namespace %s", p.Namespace)}
	default:
		out = wiringOutcome{metav1.ConditionTrue, authv1alpha1.ReasonWired,
			fmt.Sprintf("%s wired to %s", plural(int(bound), "Ingress", "Ingresses"), r.Wiring.AuthURL(p.Namespace, p.Name))}
	}
	return out, retryOrTerminal(errs)
}

// retryOrTerminal combines a pass's errors. Errors the API server gives for the request
// itself (Invalid, BadRequest: a Middleware name too long for its limit, say) come back the same
// on every retry, so when they are all there is the result is terminal: no retry loop, the
// condition says why, and the next change of the policy or an Ingress starts a new pass. Any
// other error keeps the usual retry with backoff.
func retryOrTerminal(errs []error) error {
	var transient, permanent []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
			permanent = append(permanent, err)
		} else {
			transient = append(transient, err)
		}
	}
	switch {
	case len(transient) > 0:
		return errors.Join(append(transient, permanent...)...)
	case len(permanent) > 0:
		return reconcile.TerminalError(errors.Join(permanent...))
	}
	return nil
}

func pick(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// releaseIngresses passes Ingresses wired to p that p no longer owns to their new owner, in
// one apply that replaces p's wiring with the owner's (so the Ingress is never unwired), or
// unwires them when no policy selects them any more.
func (r *JWTPolicyReconciler) releaseIngresses(ctx context.Context, p *authv1alpha1.JWTPolicy, own *wiring.Ownership, classes *wiring.Classifier, ings []*networkingv1.Ingress, traefik bool) error {
	log := ctrl.LoggerFrom(ctx)
	var errs []error
	for _, ing := range ings {
		next := own.Owner(ing)
		cl := classes.Classify(ing)
		if next != nil && cl.Kind == wiring.Traefik {
			if !traefik {
				continue // as above: leave a Traefik route closed rather than open it
			}
			if err := r.ensureMiddleware(ctx, next); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if next != nil {
			log.V(1).Info("Handing Ingress over", "Ingress", klog.KObj(ing), "from", p.Name, "to", next.Name)
		} else {
			log.V(1).Info("Unwiring Ingress", "Ingress", klog.KObj(ing))
		}
		if _, err := r.applyWiring(ctx, next, ing, cl.Kind); err != nil {
			errs = append(errs, err)
			continue
		}
		if next != nil {
			r.event(p, ing, corev1.EventTypeNormal, "HandedOver", "Unwire", "Ingress %s is now guarded by JWTPolicy %s", ing.Name, next.Name)
			r.event(next, ing, corev1.EventTypeNormal, "Wired", "Wire", "Ingress %s taken over from JWTPolicy %s", ing.Name, p.Name)
		} else {
			r.event(p, ing, corev1.EventTypeNormal, "Unwired", "Unwire", "Ingress %s is no longer guarded by this policy", ing.Name)
		}
	}
	return errors.Join(errs...)
}

// applyWiring makes ing carry owner's wiring (owner nil: none) with one server-side apply of
// claimguard's complete annotation set, when it does not already. It reports whether it wrote.
func (r *JWTPolicyReconciler) applyWiring(ctx context.Context, owner *authv1alpha1.JWTPolicy, ing *networkingv1.Ingress, kind wiring.Kind) (bool, error) {
	owned := ownedAnnotations(ing)
	want := wiring.DesiredAnnotations(r.Wiring, owner, ing, kind, owned)
	if !needsApply(ing, want, owned) {
		return false, nil
	}
	ctrl.LoggerFrom(ctx).V(4).Info("Applying Ingress annotations", "Ingress", klog.KObj(ing), "annotations", len(want))
	ac := networkingv1ac.Ingress(ing.Name, ing.Namespace).WithAnnotations(want)
	// Force: these annotations are claimguard's on a selected Ingress; a user value is
	// replaced, and given back to nobody when claimguard lets go (documented).
	if err := r.Apply(ctx, ac, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("apply wiring to Ingress %s/%s: %w", ing.Namespace, ing.Name, err)
	}
	return true, nil
}

// ensureMiddleware creates or updates the Traefik Middleware of p.
func (r *JWTPolicyReconciler) ensureMiddleware(ctx context.Context, p *authv1alpha1.JWTPolicy) error {
	want := desiredMiddleware(r.Wiring, p)
	cur := &unstructured.Unstructured{}
	cur.SetGroupVersionKind(MiddlewareGVK)
	err := r.Cache.Get(ctx, client.ObjectKeyFromObject(want), cur)
	switch {
	case apierrors.IsNotFound(err):
		cur = nil
	case err != nil:
		return fmt.Errorf("read Middleware %s/%s: %w", want.GetNamespace(), want.GetName(), err)
	}
	if middlewareUpToDate(cur, want) {
		return nil
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Applying Traefik Middleware", "Middleware", klog.KObj(want))
	if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(want), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply Middleware %s/%s: %w", want.GetNamespace(), want.GetName(), err)
	}
	return nil
}

// deleteMiddleware removes p's Middleware when it exists.
func (r *JWTPolicyReconciler) deleteMiddleware(ctx context.Context, p *authv1alpha1.JWTPolicy) error {
	cur := &unstructured.Unstructured{}
	cur.SetGroupVersionKind(MiddlewareGVK)
	err := r.Cache.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: MiddlewareName(p.Name)}, cur)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read Middleware %s/%s: %w", p.Namespace, MiddlewareName(p.Name), err)
	}
	if !metav1.IsControlledBy(cur, p) {
		return nil
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Deleting unused Traefik Middleware", "Middleware", klog.KObj(cur))
	if err := r.Delete(ctx, cur, client.Preconditions{UID: ptrUID(cur.GetUID())}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete Middleware %s/%s: %w", p.Namespace, cur.GetName(), err)
	}
	return nil
}

func ptrUID(u types.UID) *types.UID { return &u }

// reconcileDelete hands every Ingress and HTTPRoute wired to p to the next policy in line, or
// unwires it, and then lets the policy go. The Middleware goes with the policy (owner reference).
func (r *JWTPolicyReconciler) reconcileDelete(ctx context.Context, p *authv1alpha1.JWTPolicy) error {
	if !controllerutil.ContainsFinalizer(p, Finalizer) {
		return nil
	}
	own, ings, classes, err := r.loadNamespace(ctx, p.Namespace)
	if err != nil {
		return err
	}
	var release []*networkingv1.Ingress
	for i := range ings {
		if wiredTo(&ings[i]) == p.Name {
			release = append(release, &ings[i])
		}
	}
	traefik, err := r.CRD.Served(ctx)
	if err != nil {
		return err
	}
	if err := r.releaseIngresses(ctx, p, own, classes, release, traefik); err != nil {
		return err
	}
	routes, err := r.releaseRoutesOnDelete(ctx, p, own)
	if err != nil {
		return err
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Removing finalizer", "JWTPolicy", klog.KObj(p), "released", len(release), "releasedRoutes", routes)
	orig := p.DeepCopy()
	controllerutil.RemoveFinalizer(p, Finalizer)
	if err := r.Patch(ctx, p, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(err)
	}
	return nil
}

func (r *JWTPolicyReconciler) event(regarding, related client.Object, typ, reason, action, note string, args ...any) {
	if r.Recorder == nil {
		return
	}
	r.Recorder.Eventf(regarding, related, typ, reason, action, note, args...)
}

// policyPassNeeded lets through the JWTPolicy updates that change what a pass does: spec
// (generation), finalizers and deletion. Status writes, this controller's own, do not.
var policyPassNeeded = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, n := e.ObjectOld, e.ObjectNew
		return o.GetGeneration() != n.GetGeneration() ||
			!slices.Equal(o.GetFinalizers(), n.GetFinalizers()) ||
			!o.GetDeletionTimestamp().Equal(n.GetDeletionTimestamp())
	},
}

// ingressPassNeeded ignores Ingress status updates (load balancer addresses).
var ingressPassNeeded = predicate.Or[client.Object](
	predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{},
)

// SetupWithManager registers the controller, its watches and the Middleware CRD watcher. The
// Gateway API tracker is the caller's to add to the manager (Setup does): the admission
// webhooks share it.
func (r *JWTPolicyReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Builder == nil || r.CRD == nil || r.Gateway == nil {
		return errors.New("JWTPolicyReconciler needs a Builder, a CRD watcher and a Gateway API tracker")
	}
	if r.Cache == nil {
		r.Cache = mgr.GetCache()
	}
	if r.MaxConcurrentReconciles <= 0 {
		r.MaxConcurrentReconciles = 4
	}
	r.queue = &Enqueuer{}
	r.Builder.OnKeysChanged(func(k store.Key) {
		r.queue.Add(types.NamespacedName{Namespace: k.Namespace, Name: k.Name})
	})
	r.CRD.OnChange(func(ctx context.Context, served bool) {
		if served {
			r.watchMiddlewares(ctx, mgr)
		}
		r.enqueueAll(ctx)
	})
	r.Gateway.OnChange(r.gatewayAPIChanged(mgr))
	c, err := ctrl.NewControllerManagedBy(mgr).
		Named("jwtpolicy").
		For(&authv1alpha1.JWTPolicy{}, builder.WithPredicates(policyPassNeeded)).
		// Ownership depends on every policy of the namespace: age, selector, deletion.
		Watches(&authv1alpha1.JWTPolicy{}, handler.EnqueueRequestsFromMapFunc(r.policiesOfNamespace),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&networkingv1.Ingress{}, handler.EnqueueRequestsFromMapFunc(r.policiesOfNamespace),
			builder.WithPredicates(ingressPassNeeded)).
		Watches(&networkingv1.IngressClass{}, handler.EnqueueRequestsFromMapFunc(r.allPolicies)).
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.policiesOfSecret)).
		WatchesRawSource(r.queue.Source()).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Build(r)
	if err != nil {
		return fmt.Errorf("build JWTPolicy controller: %w", err)
	}
	r.controller = c
	if err := mgr.Add(routeWatchStarter{r: r, mgr: mgr}); err != nil {
		return err
	}
	return mgr.Add(r.CRD)
}

// watchMiddlewares starts watching Traefik Middlewares once their CRD is served, so a
// Middleware that is deleted or edited is put back. The handler feeds the Enqueuer directly:
// the informer is created only now, when the kind exists.
func (r *JWTPolicyReconciler) watchMiddlewares(ctx context.Context, mgr ctrl.Manager) {
	if !r.CRD.markWatched() {
		return
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(MiddlewareGVK)
	inf, err := mgr.GetCache().GetInformer(ctx, u)
	if err == nil {
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    r.enqueueMiddlewareOwner,
			UpdateFunc: func(_, n any) { r.enqueueMiddlewareOwner(n) },
			DeleteFunc: r.enqueueMiddlewareOwner,
		})
	}
	if err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Watching Traefik Middlewares failed; a deleted Middleware is restored at the next pass only")
	}
}

// enqueueMiddlewareOwner asks for a pass over the policy controlling a Middleware.
func (r *JWTPolicyReconciler) enqueueMiddlewareOwner(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	mw, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	if ref := metav1.GetControllerOf(mw); ref != nil && ref.Kind == "JWTPolicy" && strings.HasPrefix(ref.APIVersion, authv1alpha1.GroupVersion.Group+"/") {
		r.queue.Add(types.NamespacedName{Namespace: mw.GetNamespace(), Name: ref.Name})
	}
}

func (r *JWTPolicyReconciler) policiesOfNamespace(ctx context.Context, obj client.Object) []reconcile.Request {
	var list authv1alpha1.JWTPolicyList
	if err := r.List(ctx, &list, client.InNamespace(obj.GetNamespace())); err != nil {
		return nil
	}
	return requests(list.Items)
}

func (r *JWTPolicyReconciler) allPolicies(ctx context.Context, _ client.Object) []reconcile.Request {
	var list authv1alpha1.JWTPolicyList
	if err := r.List(ctx, &list); err != nil {
		return nil
	}
	return requests(list.Items)
}

// policiesOfSecret maps a Secret to the policies that reference it; every other Secret event
// ends here with an index lookup.
func (r *JWTPolicyReconciler) policiesOfSecret(ctx context.Context, obj client.Object) []reconcile.Request {
	var list authv1alpha1.JWTPolicyList
	if err := r.List(ctx, &list, client.InNamespace(obj.GetNamespace()), client.MatchingFields{IndexSecretRefs: obj.GetName()}); err != nil {
		return nil
	}
	return requests(list.Items)
}

func (r *JWTPolicyReconciler) enqueueAll(ctx context.Context) {
	for _, req := range r.allPolicies(ctx, nil) {
		r.queue.Add(req.NamespacedName)
	}
}

func requests(items []authv1alpha1.JWTPolicy) []reconcile.Request {
	out := make([]reconcile.Request, len(items))
	for i := range items {
		out[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: items[i].Namespace, Name: items[i].Name}}
	}
	return out
}
