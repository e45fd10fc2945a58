package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

// ReferenceGrantReconciler keeps, in the auth Service's namespace, one ReferenceGrant per
// namespace whose HTTPRoutes claimguard wires ("claimguard-routes-<namespace>"): the filter's
// backendRef crosses namespaces, and a gateway refuses it without a grant there. A grant lets
// the HTTPRoutes of its namespace reference the auth Service and nothing else, and exists only
// while needed: while a route of the namespace carries claimguard's filter, or a live policy
// selects one (so the grant is there before the admission webhook adds the filter to a new
// route). Requests are keyed by the route namespace's name. It runs on the leader only.
type ReferenceGrantReconciler struct {
	client.Client
	// Cache reads routes, policies and grants.
	Cache client.Reader
	// Wiring says where the auth Service is.
	Wiring WiringOptions
	// Gateway reports whether the Gateway API is served.
	Gateway *GatewayAPI

	queue *Enqueuer
}

// Reconcile creates, updates or deletes the ReferenceGrant of one route namespace.
func (g *ReferenceGrantReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ns := req.Name
	if !wiring.NeedsReferenceGrant(g.Wiring, ns) {
		return ctrl.Result{}, nil
	}
	st, err := g.Gateway.State(ctx)
	if err != nil || !st.Served {
		return ctrl.Result{}, err
	}
	need, err := g.needed(ctx, ns, st)
	if err != nil {
		return ctrl.Result{}, err
	}
	if need {
		return ctrl.Result{}, ensureReferenceGrant(ctx, g.Client, g.Cache, g.Wiring, ns)
	}
	cur := &gatewayv1beta1.ReferenceGrant{}
	key := types.NamespacedName{Namespace: g.Wiring.AuthServiceNamespace, Name: wiring.ReferenceGrantName(ns)}
	if err := g.Cache.Get(ctx, key, cur); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if cur.Labels[wiring.LabelManagedBy] != wiring.ManagedByClaimguard {
		return ctrl.Result{}, nil // someone else's object of the same name
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Deleting unused ReferenceGrant", "ReferenceGrant", klog.KObj(cur), "routeNamespace", ns)
	if err := g.Delete(ctx, cur, client.Preconditions{UID: ptrUID(cur.UID)}); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("delete ReferenceGrant %s: %w", key, err)
	}
	return ctrl.Result{}, nil
}

// needed reports whether the HTTPRoutes of ns need the grant: one carries claimguard's filter
// (it must keep resolving until it is unwired), or, when routes can be wired, a live policy
// selects one.
func (g *ReferenceGrantReconciler) needed(ctx context.Context, ns string, st GatewayAPIState) (bool, error) {
	var pols authv1alpha1.JWTPolicyList
	if err := g.Cache.List(ctx, &pols, client.InNamespace(ns)); err != nil {
		return false, fmt.Errorf("list JWTPolicies: %w", err)
	}
	var routes gatewayv1.HTTPRouteList
	if err := g.Cache.List(ctx, &routes, client.InNamespace(ns)); err != nil {
		return false, fmt.Errorf("list HTTPRoutes: %w", err)
	}
	own := wiring.NewOwnership(pols.Items)
	for i := range routes.Items {
		route := &routes.Items[i]
		if len(wiring.WiredPolicies(g.Wiring, route)) > 0 || (st.ExternalAuth && own.RouteOwner(route) != nil) {
			return true, nil
		}
	}
	return false, nil
}

// enqueueAll asks for a pass over every namespace that holds a policy or has a grant of
// claimguard, after the Gateway API appeared or changed.
func (g *ReferenceGrantReconciler) enqueueAll(ctx context.Context) {
	var pols authv1alpha1.JWTPolicyList
	if err := g.Cache.List(ctx, &pols); err == nil {
		for i := range pols.Items {
			g.queue.Add(types.NamespacedName{Name: pols.Items[i].Namespace})
		}
	}
	if st, err := g.Gateway.State(ctx); err != nil || !st.Served {
		return
	}
	var grants gatewayv1beta1.ReferenceGrantList
	if err := g.Cache.List(ctx, &grants, client.InNamespace(g.Wiring.AuthServiceNamespace),
		client.MatchingLabels{wiring.LabelManagedBy: wiring.ManagedByClaimguard}); err == nil {
		for i := range grants.Items {
			if ns := grants.Items[i].Labels[wiring.LabelRouteNamespace]; ns != "" {
				g.queue.Add(types.NamespacedName{Name: ns})
			}
		}
	}
}

// SetupWithManager registers the controller. Route and grant events reach it through its
// Enqueuer, fed by the JWTPolicyReconciler's watches (created once the Gateway API is served).
func (g *ReferenceGrantReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if g.Gateway == nil {
		return fmt.Errorf("ReferenceGrantReconciler needs a Gateway API tracker")
	}
	if g.Cache == nil {
		g.Cache = mgr.GetCache()
	}
	g.queue = &Enqueuer{}
	err := ctrl.NewControllerManagedBy(mgr).
		Named("referencegrant").
		// A policy created, deleted or with another routeSelector may change what the namespace needs.
		Watches(&authv1alpha1.JWTPolicy{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(g.queue.Source()).
		Complete(g)
	if err != nil {
		return fmt.Errorf("build ReferenceGrant controller: %w", err)
	}
	return nil
}
