package controllers

import (
	"context"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Enqueuer lets code outside the controller (key refresh events, the CRD watcher) ask for a
// pass. Before the controller starts, and on replicas that are not the leader (where it never
// starts), Add does nothing: there is no queue and nobody to write status.
type Enqueuer struct {
	queue atomic.Pointer[workqueue.TypedRateLimitingInterface[reconcile.Request]]
}

// Source is the controller source that hands the Enqueuer its queue.
func (e *Enqueuer) Source() source.Source {
	return source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		e.queue.Store(&q)
		return nil
	})
}

// Add asks for a pass over the policy; it never blocks.
func (e *Enqueuer) Add(key types.NamespacedName) {
	if q := e.queue.Load(); q != nil {
		(*q).Add(reconcile.Request{NamespacedName: key})
	}
}
