package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=referencegrants,verbs=get;list;watch;create;update;patch;delete

// routeScope is what one pass knows about the HTTPRoutes of a policy's namespace.
type routeScope struct {
	gw     GatewayAPIState
	err    error // the routes could not be read
	selErr error // spec.routeSelector is not a valid selector

	owned   []*gatewayv1.HTTPRoute // selected and owned by this policy
	release []*gatewayv1.HTTPRoute // carrying this policy's filter but no longer its own
	lost    []string               // "route (JWTPolicy winner)" for the Conflict message
}

// selectRoutes reads the HTTPRoutes of the namespace, when the Gateway API is served, and
// sorts them into owned, lost and release as reconcileConflicts does for Ingresses.
func (r *JWTPolicyReconciler) selectRoutes(ctx context.Context, s *scope) error {
	p, rs := s.policy, &s.routes
	var selector labels.Selector
	selector, rs.selErr = wiring.RouteSelector(p)
	gw, err := r.Gateway.State(ctx)
	if err != nil {
		rs.err = err
		return err
	}
	rs.gw = gw
	if !gw.Served {
		return nil
	}
	routes, err := r.listRoutes(ctx, p.Namespace)
	if err != nil {
		rs.err = err
		return err
	}
	for i := range routes {
		route := &routes[i]
		owner := s.own.RouteOwner(route)
		selected := rs.selErr == nil && selector.Matches(labels.Set(route.Labels))
		switch {
		case owner != nil && owner.UID == p.UID:
			rs.owned = append(rs.owned, route)
		case selected && owner != nil:
			rs.lost = append(rs.lost, fmt.Sprintf("HTTPRoute %s (JWTPolicy %s)", route.Name, owner.Name))
		}
		if slices.Contains(wiring.WiredPolicies(r.Wiring, route), p.Name) && (owner == nil || owner.UID != p.UID) {
			rs.release = append(rs.release, route)
		}
	}
	return nil
}

// listRoutes returns the HTTPRoutes of a namespace sorted by name.
func (r *JWTPolicyReconciler) listRoutes(ctx context.Context, namespace string) ([]gatewayv1.HTTPRoute, error) {
	var list gatewayv1.HTTPRouteList
	if err := r.List(ctx, &list, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("list HTTPRoutes: %w", err)
	}
	slices.SortFunc(list.Items, func(a, b gatewayv1.HTTPRoute) int { return strings.Compare(a.Name, b.Name) })
	return list.Items, nil
}

// routeConflictMessage is the Conflict message when HTTPRoutes (and maybe Ingresses) selected
// by the policy belong to an older one.
func routeConflictMessage(s *scope) string {
	lost := make([]string, 0, len(s.lost)+len(s.routes.lost))
	for _, l := range s.lost {
		lost = append(lost, "Ingress "+l)
	}
	lost = append(lost, s.routes.lost...)
	var counts []string
	if len(s.lost) > 0 {
		counts = append(counts, plural(len(s.lost), "Ingress", "Ingresses"))
	}
	counts = append(counts, plural(len(s.routes.lost), "HTTPRoute", "HTTPRoutes"))
	return fmt.Sprintf("%s selected by this policy %s guarded by an older policy, which wins (oldest creationTimestamp, then name); narrow spec.ingressSelector or spec.routeSelector of one of them: %s",
		strings.Join(counts, " and "), isAre(len(lost)), listNames(lost))
}

// reconcileRoutes wires the HTTPRoutes this policy owns with claimguard's ExternalAuth filter,
// keeps the ReferenceGrant that lets them reach the auth Service, hands over or unwires the
// routes it no longer owns, and returns the routes' part of the IngressesWired condition and
// sets boundRoutes.
func (r *JWTPolicyReconciler) reconcileRoutes(ctx context.Context, s *scope) (wiringOutcome, error) {
	p, rs := s.policy, &s.routes
	switch {
	case s.own == nil:
		return wiringOutcome{metav1.ConditionUnknown, authv1alpha1.ReasonNotReady, "the namespace could not be read"}, nil
	case rs.err != nil:
		// The error itself was returned by reconcileConflicts.
		return wiringOutcome{metav1.ConditionUnknown, authv1alpha1.ReasonNotReady, "the HTTPRoutes of the namespace could not be read: " + rs.err.Error()}, nil
	case rs.selErr != nil:
		// An invalid selector selects nothing; the routes this policy wired are released below.
	case !rs.gw.Served:
		p.Status.BoundRoutes = 0
		if p.Spec.RouteSelector != nil {
			return wiringOutcome{metav1.ConditionTrue, authv1alpha1.ReasonNothingSelected,
				"spec.routeSelector selects no HTTPRoute: the Gateway API (gateway.networking.k8s.io) is not installed"}, nil
		}
		return wiringOutcome{metav1.ConditionTrue, authv1alpha1.ReasonNothingSelected, ""}, nil
	}
	var (
		errs               []error
		failed, wired      []string
		grantErr           error
		bound              int32
		owned, unsupported []*gatewayv1.HTTPRoute
	)
	if rs.gw.ExternalAuth {
		owned = rs.owned
	} else {
		// The API server refuses a route with the filter: leave the routes as they are and say so.
		unsupported = rs.owned
	}
	if len(owned) > 0 && wiring.NeedsReferenceGrant(r.Wiring, p.Namespace) {
		// Before the filters, so that the gateway can resolve the reference as soon as it sees
		// one. A failure does not stop the wiring: a filter the gateway cannot resolve fails
		// closed, a route left without it would stay open.
		if grantErr = ensureReferenceGrant(ctx, r.Client, r.Cache, r.Wiring, p.Namespace); grantErr != nil {
			errs = append(errs, grantErr)
		}
	}
	changed := make([]bool, len(owned))
	applyErrs := make([]error, len(owned))
	var g errgroup.Group
	g.SetLimit(maxParallelApplies)
	for i, route := range owned {
		g.Go(func() error {
			changed[i], applyErrs[i] = r.applyRoute(ctx, p, route)
			return nil
		})
	}
	_ = g.Wait()
	for i, route := range owned {
		switch {
		case applyErrs[i] != nil:
			failed = append(failed, fmt.Sprintf("%s: %v", route.Name, applyErrs[i]))
			errs = append(errs, applyErrs[i])
		default:
			bound++
			if changed[i] {
				wired = append(wired, route.Name)
			}
		}
	}
	url := r.Wiring.AuthURL(p.Namespace, p.Name)
	switch {
	case len(wired) == 1:
		r.event(p, nil, corev1.EventTypeNormal, "Wired", "Wire", "HTTPRoute %s now checks requests at %s", wired[0], url)
	case len(wired) > 1:
		r.event(p, nil, corev1.EventTypeNormal, "Wired", "Wire", "%d HTTPRoutes now check requests at %s: %s", len(wired), url, listNames(wired))
	}
	if err := r.releaseRoutes(ctx, p, s.own, rs.release, rs.gw); err != nil {
		errs = append(errs, err)
	}
	p.Status.BoundRoutes = bound

	names := func(routes []*gatewayv1.HTTPRoute) []string {
		out := make([]string, len(routes))
		for i := range routes {
			out[i] = routes[i].Name
		}
		return out
	}
	var out wiringOutcome
	switch {
	case rs.selErr != nil:
		out = wiringOutcome{metav1.ConditionFalse, authv1alpha1.ReasonInvalidSpec,
			rs.selErr.Error() + "; fix the selector, until then the policy selects no HTTPRoute"}
	case len(failed) > 0:
		out = wiringOutcome{metav1.ConditionFalse, authv1alpha1.ReasonWiringFailed,
			fmt.Sprintf("could not wire %s (retrying): %s", plural(len(failed), "HTTPRoute", "HTTPRoutes"), listNames(failed))}
	case grantErr != nil:
		out = wiringOutcome{metav1.ConditionFalse, authv1alpha1.ReasonWiringFailed,
			fmt.Sprintf("%s wired, but the ReferenceGrant that lets %s reach the auth Service could not be applied, so the gateway refuses %s requests (retrying): %v",
				plural(int(bound), "HTTPRoute is", "HTTPRoutes are"), pick(int(bound), "it", "them"), pick(int(bound), "its", "their"), grantErr)}
	case len(unsupported) > 0:
		out = wiringOutcome{metav1.ConditionFalse, authv1alpha1.ReasonExternalAuthUnsupported,
			fmt.Sprintf("%s selected, but the installed HTTPRoute CRD has no ExternalAuth filter (it is the Gateway API's standard channel), so %s NOT guarded; install the experimental channel CRDs of the Gateway API (v1.3 or later) and %s will be wired: %s",
				plural(len(unsupported), "HTTPRoute is", "HTTPRoutes are"), pick(len(unsupported), "it is", "they are"), pick(len(unsupported), "it", "they"), listNames(names(unsupported)))}
	case len(rs.owned) == 0 && len(rs.lost) > 0:
		out = wiringOutcome{metav1.ConditionTrue, authv1alpha1.ReasonWired, "no HTTPRoute wired: every selected HTTPRoute belongs to an older policy (see Conflict)"}
	case len(rs.owned) == 0:
		out = wiringOutcome{metav1.ConditionTrue, authv1alpha1.ReasonNothingSelected, fmt.Sprintf("spec.routeSelector matches no HTTPRoute in namespace %s", p.Namespace)}
	default:
		out = wiringOutcome{metav1.ConditionTrue, authv1alpha1.ReasonWired, fmt.Sprintf("%s wired to %s", plural(int(bound), "HTTPRoute", "HTTPRoutes"), url)}
	}
	return out, retryOrTerminal(errs)
}

// releaseRoutes passes HTTPRoutes carrying p's filter that p no longer owns to their new owner,
// in one patch that replaces p's filter with the owner's, or unwires them when no policy
// selects them any more (or the Gateway API cannot carry the filter).
func (r *JWTPolicyReconciler) releaseRoutes(ctx context.Context, p *authv1alpha1.JWTPolicy, own *wiring.Ownership, routes []*gatewayv1.HTTPRoute, gw GatewayAPIState) error {
	log := ctrl.LoggerFrom(ctx)
	var errs []error
	for _, route := range routes {
		next := own.RouteOwner(route)
		if !gw.ExternalAuth {
			next = nil
		}
		if next != nil && wiring.NeedsReferenceGrant(r.Wiring, route.Namespace) {
			if err := ensureReferenceGrant(ctx, r.Client, r.Cache, r.Wiring, route.Namespace); err != nil {
				errs = append(errs, err)
			}
		}
		if next != nil {
			log.V(1).Info("Handing HTTPRoute over", "HTTPRoute", klog.KObj(route), "from", p.Name, "to", next.Name)
		} else {
			log.V(1).Info("Unwiring HTTPRoute", "HTTPRoute", klog.KObj(route))
		}
		if _, err := r.applyRoute(ctx, next, route); err != nil {
			errs = append(errs, err)
			continue
		}
		if next != nil {
			r.event(p, route, corev1.EventTypeNormal, "HandedOver", "Unwire", "HTTPRoute %s is now guarded by JWTPolicy %s", route.Name, next.Name)
			r.event(next, route, corev1.EventTypeNormal, "Wired", "Wire", "HTTPRoute %s taken over from JWTPolicy %s", route.Name, p.Name)
		} else {
			r.event(p, route, corev1.EventTypeNormal, "Unwired", "Unwire", "HTTPRoute %s is no longer guarded by this policy", route.Name)
		}
	}
	return errors.Join(errs...)
}

// releaseRoutesOnDelete releases every HTTPRoute carrying the filter of p, which is being
// deleted, and returns how many there were.
func (r *JWTPolicyReconciler) releaseRoutesOnDelete(ctx context.Context, p *authv1alpha1.JWTPolicy, own *wiring.Ownership) (int, error) {
	gw, err := r.Gateway.State(ctx)
	if err != nil || !gw.Served {
		return 0, err
	}
	routes, err := r.listRoutes(ctx, p.Namespace)
	if err != nil {
		return 0, err
	}
	var release []*gatewayv1.HTTPRoute
	for i := range routes {
		if slices.Contains(wiring.WiredPolicies(r.Wiring, &routes[i]), p.Name) {
			release = append(release, &routes[i])
		}
	}
	return len(release), r.releaseRoutes(ctx, p, own, release, gw)
}

// applyRoute makes every rule of route carry owner's filter first (owner nil: no filter of
// claimguard) with one JSON patch of the filter entries, when it does not already. When the
// cached copy says a write is needed, the route is read from the API server and the patch
// computed from that copy: a watch opened before the Gateway API CRDs changed channel keeps
// serving the old schema, which prunes the filter's externalAuth field, and a patch computed
// from it would add the filter again on every pass. The patch carries the resourceVersion the
// indices were computed from, so a route changed in between is refused with a conflict and
// looked at again, never patched at the wrong place. It reports whether it wrote.
func (r *JWTPolicyReconciler) applyRoute(ctx context.Context, owner *authv1alpha1.JWTPolicy, route *gatewayv1.HTTPRoute) (bool, error) {
	if ops := wiring.WiringOps(r.Wiring, owner, route); len(ops) == 0 {
		return false, nil
	}
	if r.APIReader != nil {
		live := &gatewayv1.HTTPRoute{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(route), live); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, fmt.Errorf("read HTTPRoute %s/%s: %w", route.Namespace, route.Name, err)
		}
		route = live
	}
	if owner != nil {
		if i := wiring.TooManyFilters(r.Wiring, route); i >= 0 {
			return false, fmt.Errorf("rule %d of HTTPRoute %s/%s already has 16 filters, the most the Gateway API allows, so claimguard's cannot be added: %w",
				i, route.Namespace, route.Name, errNoRoom)
		}
	}
	ops := wiring.WiringOps(r.Wiring, owner, route)
	if len(ops) == 0 {
		return false, nil
	}
	ops = append([]wiring.PatchOp{{Op: "replace", Path: "/metadata/resourceVersion", Value: route.ResourceVersion}}, ops...)
	body, err := json.Marshal(ops)
	if err != nil {
		return false, err
	}
	ctrl.LoggerFrom(ctx).V(4).Info("Patching HTTPRoute filters", "HTTPRoute", klog.KObj(route), "operations", len(ops)-1)
	if err := r.Patch(ctx, route.DeepCopy(), client.RawPatch(types.JSONPatchType, body), client.FieldOwner(FieldManager)); err != nil {
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("wire HTTPRoute %s/%s: %w", route.Namespace, route.Name, err)
	}
	return true, nil
}

// errNoRoom: a rule has no room for claimguard's filter. It is the user's to fix, like an
// Invalid answer of the API server, so it ends the pass without a retry loop.
var errNoRoom = apierrors.NewBadRequest("no room for claimguard's filter")

// ensureReferenceGrant creates or updates, in the auth Service's namespace, the ReferenceGrant
// that lets the HTTPRoutes of routeNamespace reference the auth Service. The policy reconciler
// calls it before wiring routes; the ReferenceGrantReconciler keeps it and deletes it.
func ensureReferenceGrant(ctx context.Context, c client.Client, reader client.Reader, opts WiringOptions, routeNamespace string) error {
	want := wiring.DesiredReferenceGrant(opts, routeNamespace)
	cur := &gatewayv1beta1.ReferenceGrant{}
	err := reader.Get(ctx, client.ObjectKeyFromObject(want), cur)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return fmt.Errorf("read ReferenceGrant %s/%s: %w", want.Namespace, want.Name, err)
	case wiring.ReferenceGrantUpToDate(cur, want):
		return nil
	}
	u, err := toUnstructured(want)
	if err != nil {
		return err
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Applying ReferenceGrant", "ReferenceGrant", klog.KObj(want), "routeNamespace", routeNamespace)
	// Force: the grant's name is claimguard's (claimguard-routes-<namespace>).
	if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply ReferenceGrant %s/%s: %w", want.Namespace, want.Name, err)
	}
	return nil
}

// gatewayAPIChanged is told by the Gateway API tracker when the Gateway API appears, goes or
// changes channel: once it is served, the leader watches HTTPRoutes and ReferenceGrants, and
// every policy is looked at again.
func (r *JWTPolicyReconciler) gatewayAPIChanged(mgr ctrl.Manager) func(context.Context, GatewayAPIState) {
	return func(ctx context.Context, st GatewayAPIState) {
		if st.Served && leading(mgr) {
			r.watchRoutes(ctx, mgr)
		}
		r.enqueueAll(ctx)
		if r.Grants != nil {
			r.Grants.enqueueAll(ctx)
		}
	}
}

// leading reports whether this replica is the leader (or runs without leader election).
func leading(mgr ctrl.Manager) bool {
	select {
	case <-mgr.Elected():
		return true
	default:
		return false
	}
}

// routeWatchStarter starts the route watches when this replica becomes the leader after the
// tracker reported the Gateway API served (its report on a non-leader starts nothing).
type routeWatchStarter struct {
	r   *JWTPolicyReconciler
	mgr ctrl.Manager
}

func (w routeWatchStarter) Start(ctx context.Context) error {
	st, err := w.r.Gateway.State(ctx)
	if err == nil && st.Served {
		w.r.watchRoutes(ctx, w.mgr)
	}
	return nil
}

// watchRoutes watches HTTPRoutes and claimguard's ReferenceGrants once the Gateway API is
// served: a route that is created, relabelled or edited (its filter removed) gets a pass of
// the policies of its namespace and of the ReferenceGrant reconciler; a grant deleted or edited
// by hand is put back. The handlers feed the Enqueuers directly: the informers can only be
// created now, when the kinds exist.
func (r *JWTPolicyReconciler) watchRoutes(ctx context.Context, mgr ctrl.Manager) {
	if !r.routesWatched.CompareAndSwap(false, true) {
		return
	}
	log := ctrl.LoggerFrom(ctx)
	inf, err := mgr.GetCache().GetInformer(ctx, &gatewayv1.HTTPRoute{})
	if err == nil {
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: r.routeChanged,
			UpdateFunc: func(o, n any) {
				// Status writes of the gateway controllers change neither; they are most events.
				if ro, ok := o.(*gatewayv1.HTTPRoute); ok {
					if rn, ok := n.(*gatewayv1.HTTPRoute); ok && ro.Generation == rn.Generation && labels.Equals(ro.Labels, rn.Labels) {
						return
					}
				}
				r.routeChanged(n)
			},
			DeleteFunc: r.routeChanged,
		})
	}
	if err != nil {
		r.routesWatched.Store(false)
		log.Error(err, "Watching HTTPRoutes failed; routes are wired at the next pass of their policies only")
		return
	}
	inf, err = mgr.GetCache().GetInformer(ctx, &gatewayv1beta1.ReferenceGrant{})
	if err == nil {
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    r.grantChanged,
			UpdateFunc: func(_, n any) { r.grantChanged(n) },
			DeleteFunc: r.grantChanged,
		})
	}
	if err != nil {
		log.Error(err, "Watching ReferenceGrants failed; a deleted grant is restored at the next pass only")
	}
}

// routeChanged asks for a pass over the policies of a route's namespace and its grant.
func (r *JWTPolicyReconciler) routeChanged(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	route, ok := obj.(metav1.Object)
	if !ok {
		return
	}
	for _, req := range r.policiesOfNamespace(context.Background(), &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: route.GetNamespace()}}) {
		r.queue.Add(req.NamespacedName)
	}
	if r.Grants != nil {
		r.Grants.queue.Add(types.NamespacedName{Name: route.GetNamespace()})
	}
}

// grantChanged asks the ReferenceGrant reconciler to look at the namespace a grant of
// claimguard serves.
func (r *JWTPolicyReconciler) grantChanged(obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	g, ok := obj.(metav1.Object)
	if !ok || r.Grants == nil || g.GetNamespace() != r.Wiring.AuthServiceNamespace || g.GetLabels()[wiring.LabelManagedBy] != wiring.ManagedByClaimguard {
		return
	}
	if ns := g.GetLabels()[wiring.LabelRouteNamespace]; ns != "" {
		r.Grants.queue.Add(types.NamespacedName{Name: ns})
	}
}

// toUnstructured converts a typed object, with its apiVersion and kind set, for an apply.
func toUnstructured(obj any) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	// The converter writes the zero creationTimestamp as null, which an apply would claim.
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	return u, nil
}
