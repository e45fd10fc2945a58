package admission

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/client-go/discovery"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/controllers"
	"github.com/claimguard/claimguard/internal/wiring"
)

// Options configure the admission webhooks.
type Options struct {
	// Wiring says what claimguard writes on a guarded Ingress (the reconciler's options).
	Wiring wiring.Options
	// AllowInsecureJWKSHTTP lets a policy name http:// key URLs (--allow-insecure-jwks-http).
	AllowInsecureJWKSHTTP bool
	// TrustedUsers are the usernames whose Ingress writes are not guarded: claimguard's own
	// service account ("system:serviceaccount:<namespace>:<name>").
	TrustedUsers []string
	// GatewayAPI says whether HTTPRoutes can carry claimguard's ExternalAuth filter; share the
	// controllers' tracker (JWTPolicyReconciler.Gateway). Nil: Setup adds a tracker of its own.
	GatewayAPI RouteSupport
}

// ServiceAccountUsername is the username of service account name in namespace.
func ServiceAccountUsername(namespace, name string) string {
	return "system:serviceaccount:" + namespace + ":" + name
}

// Setup registers the JWTPolicy defaulter and validator and the Ingress and HTTPRoute mutators
// and validators on mgr's webhook server. They read from mgr's cache; the informers they need are created
// here, so that every replica (not only the leader, whose controllers create them) has them
// synced before its webhook server starts.
func Setup(mgr ctrl.Manager, o Options) error {
	for _, u := range o.TrustedUsers {
		if !validUsername(u) {
			return fmt.Errorf("trusted user %q is not a service-account username (system:serviceaccount:<namespace>:<name>)", u)
		}
	}
	reader := mgr.GetClient()
	if err := ctrl.NewWebhookManagedBy(mgr, &authv1alpha1.JWTPolicy{}).
		WithDefaulter(NewJWTPolicyDefaulter()).
		WithValidator(&JWTPolicyValidator{Reader: reader, AllowInsecureHTTP: o.AllowInsecureJWKSHTTP}).
		Complete(); err != nil {
		return fmt.Errorf("register the JWTPolicy webhooks: %w", err)
	}
	scope := guardScope{Reader: reader, APIReader: mgr.GetAPIReader(), Wiring: o.Wiring, TrustedUsers: o.TrustedUsers}
	if err := ctrl.NewWebhookManagedBy(mgr, &networkingv1.Ingress{}).
		WithDefaulter(&IngressMutator{guardScope: scope}).
		WithValidator(&IngressValidator{guardScope: scope, Authorizer: mgr.GetClient()}).
		Complete(); err != nil {
		return fmt.Errorf("register the Ingress webhooks: %w", err)
	}
	gw := o.GatewayAPI
	if gw == nil {
		disc, err := discovery.NewDiscoveryClientForConfig(mgr.GetConfig())
		if err != nil {
			return fmt.Errorf("discovery client: %w", err)
		}
		tracker := controllers.NewGatewayAPI(disc, 0)
		if err := mgr.Add(tracker); err != nil {
			return fmt.Errorf("add Gateway API tracker: %w", err)
		}
		gw = tracker
	}
	routes := routeScope{guardScope: scope, Gateway: gw}
	// The mutator is a raw handler (see HTTPRouteMutator); the validator a typed one. Neither
	// needs an HTTPRoute informer: they judge the request's objects, so they work whether or not
	// the Gateway API is installed.
	mgr.GetWebhookServer().Register(HTTPRouteMutatePath, &admission.Webhook{Handler: &HTTPRouteMutator{routeScope: routes, decoder: admission.NewDecoder(mgr.GetScheme())}})
	if err := ctrl.NewWebhookManagedBy(mgr, &gatewayv1.HTTPRoute{}).
		WithValidator(&HTTPRouteValidator{routeScope: routes, Authorizer: mgr.GetClient()}).
		Complete(); err != nil {
		return fmt.Errorf("register the HTTPRoute webhooks: %w", err)
	}
	for _, obj := range []client.Object{&authv1alpha1.JWTPolicy{}, &networkingv1.Ingress{}, &networkingv1.IngressClass{}, &corev1.Namespace{}, &corev1.Secret{}} {
		if _, err := mgr.GetCache().GetInformer(context.Background(), obj); err != nil {
			return fmt.Errorf("watch %T for the webhooks: %w", obj, err)
		}
	}
	return nil
}
