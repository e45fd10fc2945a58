package controllers

import (
	"time"

	"github.com/claimguard/claimguard/internal/wiring"
)

// Names claimguard writes into the cluster.
const (
	// FieldManager is the server-side apply field manager of every wiring write, so claimguard
	// owns exactly the fields it set and can take them back without touching anyone else's.
	FieldManager = "claimguard"
	// Finalizer keeps a JWTPolicy until its Ingresses are unwired or handed over: Ingress
	// annotations are not owned objects, so garbage collection cannot remove them.
	Finalizer = "auth.claimguard.dev/unwire"
	// AnnotationPolicy names, on a wired Ingress, the JWTPolicy that guards it.
	AnnotationPolicy = wiring.AnnotationPolicy
	// MiddlewarePrefix starts the name of every Traefik Middleware claimguard creates
	// ("claimguard-<policy>"); router.middlewares entries of that form belong to claimguard.
	MiddlewarePrefix = wiring.MiddlewarePrefix
)

// The ingress-nginx and Traefik annotations of the wiring (see internal/wiring, which decides
// them for the reconciler and the admission webhooks alike).
const (
	AnnotationNginxAuthURL               = wiring.AnnotationNginxAuthURL
	AnnotationNginxAuthResponseHeaders   = wiring.AnnotationNginxAuthResponseHeaders
	AnnotationNginxAuthKeepalive         = wiring.AnnotationNginxAuthKeepalive
	AnnotationNginxAuthKeepaliveRequests = wiring.AnnotationNginxAuthKeepaliveRequests
	AnnotationNginxAuthKeepaliveTimeout  = wiring.AnnotationNginxAuthKeepaliveTimeout
	AnnotationTraefikRouterMiddlewares   = wiring.AnnotationTraefikRouterMiddlewares
)

// WiringOptions say where the forward-auth Service is and which ingress controllers are wired.
type WiringOptions = wiring.Options

// DefaultWiringOptions returns the defaults of the manager's flags.
func DefaultWiringOptions() WiringOptions { return wiring.DefaultOptions() }

// Timing of the controllers; the zero value takes the defaults.
type Timing struct {
	// Debounce is how long the snapshot builder gathers changes before it publishes.
	Debounce time.Duration
	// CRDRecheck is how often the presence of Traefik's Middleware CRD, and of the Gateway API
	// with its ExternalAuth filter, is checked.
	CRDRecheck time.Duration
	// KeyRecheck bounds the wait before a policy whose remote keys are still loading or failing
	// is looked at again (refresh events usually come sooner).
	KeyRecheck time.Duration
	// Resync is the longest a healthy policy goes without a pass, which refreshes lastRefresh.
	Resync time.Duration
}

func (t Timing) withDefaults() Timing {
	if t.Debounce <= 0 {
		t.Debounce = 100 * time.Millisecond
	}
	if t.CRDRecheck <= 0 {
		t.CRDRecheck = 30 * time.Second
	}
	if t.KeyRecheck <= 0 {
		t.KeyRecheck = 10 * time.Second
	}
	if t.Resync <= 0 {
		t.Resync = 10 * time.Minute
	}
	return t
}
