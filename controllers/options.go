package controllers

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"
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
	AnnotationPolicy = "auth.claimguard.dev/policy"
	// MiddlewarePrefix starts the name of every Traefik Middleware claimguard creates
	// ("claimguard-<policy>"); router.middlewares entries of that form belong to claimguard.
	MiddlewarePrefix = "claimguard-"
)

// The ingress-nginx annotations of the auth-url wiring.
const (
	AnnotationNginxAuthURL                     = "nginx.ingress.kubernetes.io/auth-url"
	AnnotationNginxAuthResponseHeaders         = "nginx.ingress.kubernetes.io/auth-response-headers"
	AnnotationNginxAuthKeepalive               = "nginx.ingress.kubernetes.io/auth-keepalive"
	AnnotationNginxAuthKeepaliveRequests       = "nginx.ingress.kubernetes.io/auth-keepalive-requests"
	AnnotationNginxAuthKeepaliveTimeout        = "nginx.ingress.kubernetes.io/auth-keepalive-timeout"
	AnnotationTraefikRouterMiddlewares         = "traefik.ingress.kubernetes.io/router.middlewares"
	annotationLegacyIngressClass               = "kubernetes.io/ingress.class"
	annotationDefaultIngressClass              = "ingressclass.kubernetes.io/is-default-class"
	traefikMiddlewareProvider                  = "@kubernetescrd"
	defaultNginxController                     = "k8s.io/ingress-nginx"
	defaultTraefikController                   = "traefik.io/ingress-controller"
	defaultAuthServiceName                     = "claimguard"
	defaultAuthServiceNamespace                = "claimguard-system"
	defaultAuthServicePort               int32 = 8443
)

// Keepalive settings of the nginx wiring. Without auth-keepalive ingress-nginx opens a new
// connection to the auth Service for every request, which costs more than the check itself.
const (
	nginxKeepalive         = "32"
	nginxKeepaliveRequests = "10000"
	nginxKeepaliveTimeout  = "60"
)

// WiringOptions say where the forward-auth Service is and which ingress controllers are wired.
type WiringOptions struct {
	// AuthServiceName is the Service in front of the forward-auth listeners.
	AuthServiceName string
	// AuthServiceNamespace is the Service's namespace.
	AuthServiceNamespace string
	// AuthServicePort is the Service port of the forward-auth listener.
	AuthServicePort int32
	// AuthServiceScheme is "http" or "https".
	AuthServiceScheme string
	// NginxControllers are the IngressClass spec.controller values wired with ingress-nginx
	// annotations.
	NginxControllers []string
	// TraefikControllers are the IngressClass spec.controller values wired with a Traefik
	// Middleware.
	TraefikControllers []string
}

// DefaultWiringOptions returns the defaults of the manager's flags.
func DefaultWiringOptions() WiringOptions {
	return WiringOptions{
		AuthServiceName:      defaultAuthServiceName,
		AuthServiceNamespace: defaultAuthServiceNamespace,
		AuthServicePort:      defaultAuthServicePort,
		AuthServiceScheme:    "http",
		NginxControllers:     []string{defaultNginxController},
		TraefikControllers:   []string{defaultTraefikController},
	}
}

// Validate checks the options; errors name the manager flag.
func (o WiringOptions) Validate() error {
	if o.AuthServiceName == "" {
		return fmt.Errorf("--auth-service-name must not be empty")
	}
	if o.AuthServiceNamespace == "" {
		return fmt.Errorf("--auth-service-namespace must not be empty")
	}
	if o.AuthServicePort < 1 || o.AuthServicePort > 65535 {
		return fmt.Errorf("--auth-service-port %d: must be 1-65535", o.AuthServicePort)
	}
	if o.AuthServiceScheme != "http" && o.AuthServiceScheme != "https" {
		return fmt.Errorf("--auth-service-scheme %q: must be http or https", o.AuthServiceScheme)
	}
	for _, c := range o.NginxControllers {
		if slices.Contains(o.TraefikControllers, c) {
			return fmt.Errorf("controller %q is named by both --nginx-controller-names and --traefik-controller-names", c)
		}
	}
	return nil
}

// AuthURL is the forward-auth endpoint of policy namespace/name, such as
// http://claimguard.claimguard-system.svc:8443/authz/shop/orders-api.
func (o WiringOptions) AuthURL(namespace, name string) string {
	host := o.AuthServiceName + "." + o.AuthServiceNamespace + ".svc"
	return o.AuthServiceScheme + "://" + net.JoinHostPort(host, strconv.Itoa(int(o.AuthServicePort))) +
		"/authz/" + namespace + "/" + name
}

// Timing of the controllers; the zero value takes the defaults.
type Timing struct {
	// Debounce is how long the snapshot builder gathers changes before it publishes.
	Debounce time.Duration
	// CRDRecheck is how often the presence of Traefik's Middleware CRD is checked.
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
