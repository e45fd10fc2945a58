package wiring

import (
	"fmt"
	"net"
	"slices"
	"strconv"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Names claimguard reads and writes on Ingresses, Namespaces and Middlewares.
const (
	// AnnotationPolicy names, on a wired Ingress, the JWTPolicy that guards it.
	AnnotationPolicy = "auth.claimguard.dev/policy"
	// MiddlewarePrefix starts the name of every Traefik Middleware claimguard creates
	// ("claimguard-<policy>"); router.middlewares entries of that form belong to claimguard.
	MiddlewarePrefix = "claimguard-"
	// LabelExempt, set to "true" on an Ingress or a Namespace, lifts the admission guard: changes
	// the guard would refuse are let through. Setting it on an Ingress is itself guarded (verb
	// "exempt" on jwtpolicies); Namespace labels are administrators' territory already.
	LabelExempt = "auth.claimguard.dev/exempt"
	// LabelGuarded is set to "true" by claimguard on every Namespace that holds a JWTPolicy; the
	// Ingress webhooks select namespaces by it, so that an outage of claimguard never blocks
	// Ingress changes in namespaces it does not guard.
	LabelGuarded = "auth.claimguard.dev/guarded"
)

// The ingress-nginx and Traefik annotations of the wiring, and the ones that choose a class.
const (
	AnnotationNginxAuthURL               = "nginx.ingress.kubernetes.io/auth-url"
	AnnotationNginxAuthResponseHeaders   = "nginx.ingress.kubernetes.io/auth-response-headers"
	AnnotationNginxAuthKeepalive         = "nginx.ingress.kubernetes.io/auth-keepalive"
	AnnotationNginxAuthKeepaliveRequests = "nginx.ingress.kubernetes.io/auth-keepalive-requests"
	AnnotationNginxAuthKeepaliveTimeout  = "nginx.ingress.kubernetes.io/auth-keepalive-timeout"
	AnnotationTraefikRouterMiddlewares   = "traefik.ingress.kubernetes.io/router.middlewares"
	// AnnotationLegacyIngressClass is the class annotation from before IngressClass objects.
	AnnotationLegacyIngressClass = "kubernetes.io/ingress.class"
	// AnnotationDefaultIngressClass marks the IngressClass used by Ingresses that name none.
	AnnotationDefaultIngressClass = "ingressclass.kubernetes.io/is-default-class"
	// TraefikMiddlewareProvider is the provider suffix of a Middleware of the Kubernetes CRD provider.
	TraefikMiddlewareProvider = "@kubernetescrd"
	// DefaultNginxController is ingress-nginx's IngressClass spec.controller.
	DefaultNginxController = "k8s.io/ingress-nginx"
	// DefaultTraefikController is Traefik's IngressClass spec.controller.
	DefaultTraefikController = "traefik.io/ingress-controller"

	defaultAuthServiceName            = "claimguard"
	defaultAuthServiceNamespace       = "claimguard-system"
	defaultAuthServicePort      int32 = 8443
)

// Keepalive settings of the nginx wiring. Without auth-keepalive ingress-nginx opens a new
// connection to the auth Service for every request, which costs more than the check itself.
const (
	NginxKeepalive         = "32"
	NginxKeepaliveRequests = "10000"
	NginxKeepaliveTimeout  = "60"
)

// MiddlewareGVK is Traefik's Middleware kind.
var MiddlewareGVK = schema.GroupVersionKind{Group: "traefik.io", Version: "v1alpha1", Kind: "Middleware"}

// Options say where the forward-auth Service is and which ingress controllers are wired.
type Options struct {
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

// DefaultOptions returns the defaults of the manager's flags.
func DefaultOptions() Options {
	return Options{
		AuthServiceName:      defaultAuthServiceName,
		AuthServiceNamespace: defaultAuthServiceNamespace,
		AuthServicePort:      defaultAuthServicePort,
		AuthServiceScheme:    "http",
		NginxControllers:     []string{DefaultNginxController},
		TraefikControllers:   []string{DefaultTraefikController},
	}
}

// Validate checks the options; errors name the manager flag.
func (o Options) Validate() error {
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
func (o Options) AuthURL(namespace, name string) string {
	host := o.AuthServiceName + "." + o.AuthServiceNamespace + ".svc"
	return o.AuthServiceScheme + "://" + net.JoinHostPort(host, strconv.Itoa(int(o.AuthServicePort))) +
		"/authz/" + namespace + "/" + name
}
