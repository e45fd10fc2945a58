package controllers

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/discovery"
	ctrl "sigs.k8s.io/controller-runtime"
)

// MiddlewareCRD tracks whether Traefik's Middleware CRD (traefik.io/v1alpha1 middlewares) is
// served. It asks discovery on first use and then periodically, so a CRD installed after the
// manager started is picked up without a restart. It runs on the leader only: only the
// reconciler asks.
type MiddlewareCRD struct {
	disc     discovery.DiscoveryInterface
	interval time.Duration

	mu       sync.Mutex
	checked  bool
	served   bool
	watched  bool
	onChange func(ctx context.Context, served bool)
}

// NewMiddlewareCRD returns a watcher asking disc every interval (0: 30s).
func NewMiddlewareCRD(disc discovery.DiscoveryInterface, interval time.Duration) *MiddlewareCRD {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	return &MiddlewareCRD{disc: disc, interval: interval}
}

// OnChange registers fn, called from Start when the CRD appears or disappears.
func (m *MiddlewareCRD) OnChange(fn func(ctx context.Context, served bool)) {
	m.mu.Lock()
	m.onChange = fn
	m.mu.Unlock()
}

// Served reports whether the CRD is served, asking discovery if nobody has yet.
func (m *MiddlewareCRD) Served(ctx context.Context) (bool, error) {
	m.mu.Lock()
	checked, served := m.checked, m.served
	m.mu.Unlock()
	if checked {
		return served, nil
	}
	_, err := m.check(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.served, err
}

// check asks discovery and reports whether the answer differs from the last one.
func (m *MiddlewareCRD) check(_ context.Context) (bool, error) {
	served := false
	res, err := m.disc.ServerResourcesForGroupVersion(MiddlewareGVK.GroupVersion().String())
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return false, fmt.Errorf("discover %s: %w", MiddlewareGVK.GroupVersion(), err)
	default:
		for _, r := range res.APIResources {
			if r.Kind == MiddlewareGVK.Kind {
				served = true
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := !m.checked || m.served != served
	m.checked, m.served = true, served
	return changed, nil
}

func (m *MiddlewareCRD) markWatched() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.watched {
		return false
	}
	m.watched = true
	return true
}

// Start checks discovery every interval until ctx ends and tells OnChange about changes.
func (m *MiddlewareCRD) Start(ctx context.Context) error {
	log := ctrl.LoggerFrom(ctx).WithName("middleware-crd")
	t := time.NewTicker(m.interval)
	defer t.Stop()
	first := true
	for {
		changed, err := m.check(ctx)
		if err != nil {
			log.V(1).Info("Discovery of Traefik's Middleware CRD failed; retrying", "error", err.Error())
		}
		m.mu.Lock()
		served, fn := m.served, m.onChange
		m.mu.Unlock()
		// The first check always reports, so the watch starts when the CRD is already there.
		if (changed || first) && err == nil && fn != nil {
			log.Info("Traefik Middleware CRD", "served", served)
			fn(ctx, served)
			first = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
