package controllers

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;patch

// NamespaceReconciler labels every namespace that holds a JWTPolicy with
// auth.claimguard.dev/guarded=true and removes the label when the last one is gone. The Ingress
// admission webhooks select namespaces by this label, so with failurePolicy Fail an outage of
// claimguard blocks Ingress changes only where a policy guards them. A policy being deleted still
// counts: its Ingresses are guarded until its finalizer has handed them over or unwired them.
// It runs on the leader only, one pass per namespace at a time, so the label follows the policies
// without races between passes.
type NamespaceReconciler struct {
	client.Client
}

// Reconcile sets or removes the guarded label of one namespace.
func (r *NamespaceReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	ns := &corev1.Namespace{}
	if err := r.Get(ctx, req.NamespacedName, ns); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var list authv1alpha1.JWTPolicyList
	if err := r.List(ctx, &list, client.InNamespace(ns.Name), client.Limit(1)); err != nil {
		return ctrl.Result{}, fmt.Errorf("list JWTPolicies: %w", err)
	}
	want := len(list.Items) > 0
	if has := ns.Labels[wiring.LabelGuarded] == "true"; has == want {
		return ctrl.Result{}, nil
	}
	// A merge patch of this one label: other labels are the administrators', and a label
	// claimguard does not want is removed whoever set it (the label is claimguard's).
	value := "null"
	if want {
		value = `"true"`
	}
	patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:%s}}}`, wiring.LabelGuarded, value)
	ctrl.LoggerFrom(ctx).V(1).Info("Setting guarded label", "Namespace", klog.KObj(ns), "guarded", want)
	if err := r.Patch(ctx, ns, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	return ctrl.Result{}, nil
}

// guardedLabelChanged lets through new namespaces and changes of the guarded label.
var guardedLabelChanged = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetLabels()[wiring.LabelGuarded] != e.ObjectNew.GetLabels()[wiring.LabelGuarded]
	},
	DeleteFunc: func(event.DeleteEvent) bool { return false },
}

// policyCountChanged lets through the JWTPolicy events that can change whether a namespace
// holds one: creation and deletion.
var policyCountChanged = predicate.Funcs{
	UpdateFunc: func(event.UpdateEvent) bool { return false },
}

// SetupWithManager registers the controller.
func (r *NamespaceReconciler) SetupWithManager(mgr ctrl.Manager) error {
	err := ctrl.NewControllerManagedBy(mgr).
		Named("namespace-guard").
		For(&corev1.Namespace{}, builder.WithPredicates(guardedLabelChanged)).
		Watches(&authv1alpha1.JWTPolicy{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: o.GetNamespace()}}}
		}), builder.WithPredicates(policyCountChanged)).
		Complete(r)
	if err != nil {
		return fmt.Errorf("build namespace controller: %w", err)
	}
	return nil
}
