// Package scheme builds the runtime.Scheme claimguard talks to the API server with.
package scheme

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// New returns a scheme with the built-in Kubernetes types, CRDs, the Gateway API (HTTPRoute,
// ReferenceGrant: registering the types needs no Gateway API in the cluster) and claimguard's API.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(gatewayv1.Install(s))
	utilruntime.Must(gatewayv1beta1.Install(s))
	utilruntime.Must(authv1alpha1.AddToScheme(s))
	return s
}
