package wiring

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

func merged(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

func TestAuthURL(t *testing.T) {
	o := DefaultOptions()
	if got, want := o.AuthURL("shop", "orders-api"), "http://claimguard.claimguard-system.svc:8443/authz/shop/orders-api"; got != want {
		t.Errorf("AuthURL %q, want %q", got, want)
	}
	o.AuthServiceScheme, o.AuthServicePort, o.AuthServiceName, o.AuthServiceNamespace = "https", 443, "auth", "sec"
	if got, want := o.AuthURL("a", "b"), "https://auth.sec.svc:443/authz/a/b"; got != want {
		t.Errorf("AuthURL %q, want %q", got, want)
	}
}
func TestWiringOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"defaults", func(*Options) {}, ""},
		{"no service", func(o *Options) { o.AuthServiceName = "" }, "--auth-service-name"},
		{"no namespace", func(o *Options) { o.AuthServiceNamespace = "" }, "--auth-service-namespace"},
		{"port", func(o *Options) { o.AuthServicePort = 70000 }, "--auth-service-port"},
		{"scheme", func(o *Options) { o.AuthServiceScheme = "ftp" }, "--auth-service-scheme"},
		{"controller twice", func(o *Options) { o.TraefikControllers = append(o.TraefikControllers, "k8s.io/ingress-nginx") }, "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			tc.mod(&o)
			err := o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}
func TestUserMiddlewares(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  []string
	}{
		{"", nil},
		{"shop-auth@kubernetescrd", []string{"shop-auth@kubernetescrd"}},
		{"shop-claimguard-orders@kubernetescrd, shop-auth@kubernetescrd ,", []string{"shop-auth@kubernetescrd"}},
		// Another namespace's claimguard-named Middleware is not ours to drop; nor is a file provider one.
		{"other-claimguard-x@kubernetescrd,shop-claimguard-x@file", []string{"other-claimguard-x@kubernetescrd", "shop-claimguard-x@file"}},
	} {
		if d := cmp.Diff(tc.want, UserMiddlewares("shop", tc.value)); d != "" {
			t.Errorf("UserMiddlewares(%q) (-want +got):\n%s", tc.value, d)
		}
	}
}
func ownerPolicy(headers ...string) *authv1alpha1.JWTPolicy {
	p := &authv1alpha1.JWTPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"}}
	for _, h := range headers {
		p.Spec.ForwardClaims = append(p.Spec.ForwardClaims, authv1alpha1.ForwardClaim{Claim: "sub", Header: h})
	}
	return p
}
func TestDesiredAnnotations(t *testing.T) {
	o := DefaultOptions()
	url := "http://claimguard.claimguard-system.svc:8443/authz/shop/orders"
	nginx := map[string]string{
		AnnotationPolicy: "orders", AnnotationNginxAuthURL: url,
		AnnotationNginxAuthKeepalive: "32", AnnotationNginxAuthKeepaliveRequests: "10000", AnnotationNginxAuthKeepaliveTimeout: "60",
	}
	withHeaders := merged(nginx, map[string]string{AnnotationNginxAuthResponseHeaders: "X-Auth-Subject,X-Auth-Roles"})
	for _, tc := range []struct {
		name    string
		owner   *authv1alpha1.JWTPolicy
		current map[string]string
		kind    Kind
		owned   []string
		want    map[string]string
	}{
		{"nginx without headers", ownerPolicy(), nil, Nginx, nil, nginx},
		{"nginx headers canonical, deduplicated", ownerPolicy("x-auth-subject", "X-Auth-Roles", "X-AUTH-SUBJECT"), nil, Nginx, nil, withHeaders},
		{"traefik first", ownerPolicy(), map[string]string{AnnotationTraefikRouterMiddlewares: "shop-auth@kubernetescrd"}, Traefik, nil,
			map[string]string{AnnotationPolicy: "orders", AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd,shop-auth@kubernetescrd"}},
		{"traefik takes over from another policy", ownerPolicy(), map[string]string{AnnotationTraefikRouterMiddlewares: "shop-claimguard-old@kubernetescrd,shop-auth@kubernetescrd"}, Traefik, nil,
			map[string]string{AnnotationPolicy: "orders", AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd,shop-auth@kubernetescrd"}},
		{"unwired, nothing owned", nil, map[string]string{AnnotationTraefikRouterMiddlewares: "shop-auth@kubernetescrd"}, Traefik, nil, map[string]string{}},
		{"unwired keeps the user's middlewares it owns", nil, map[string]string{AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd,shop-auth@kubernetescrd"}, Traefik,
			[]string{AnnotationTraefikRouterMiddlewares}, map[string]string{AnnotationTraefikRouterMiddlewares: "shop-auth@kubernetescrd"}},
		{"unwired, only ours", nil, map[string]string{AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd"}, Traefik,
			[]string{AnnotationTraefikRouterMiddlewares}, map[string]string{}},
		{"unsupported is unwired", ownerPolicy(), nil, Unsupported, nil, map[string]string{}},
		{"traefik to nginx keeps the user's middlewares", ownerPolicy(), map[string]string{AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd,shop-auth@kubernetescrd"}, Nginx,
			[]string{AnnotationTraefikRouterMiddlewares}, merged(nginx, map[string]string{AnnotationTraefikRouterMiddlewares: "shop-auth@kubernetescrd"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: tc.current}}
			owned := map[string]bool{}
			for _, k := range tc.owned {
				owned[k] = true
			}
			if d := cmp.Diff(tc.want, DesiredAnnotations(o, tc.owner, ing, tc.kind, owned)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}
func TestClassify(t *testing.T) {
	o := DefaultOptions()
	o.TraefikControllers = append(o.TraefikControllers, "example.com/my-traefik")
	classes := []networkingv1.IngressClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "public"}, Spec: networkingv1.IngressClassSpec{Controller: "example.com/my-traefik"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "haproxy"}, Spec: networkingv1.IngressClassSpec{Controller: "haproxy.org/ingress-controller"}},
	}
	def := func(name string) networkingv1.IngressClass {
		ic := classes[0]
		ic.Name = name
		ic.Annotations = map[string]string{AnnotationDefaultIngressClass: "true"}
		return ic
	}
	ing := func(class *string, legacy string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{IngressClassName: class}}
		if legacy != "" {
			i.Annotations = map[string]string{AnnotationLegacyIngressClass: legacy}
		}
		return i
	}
	for _, tc := range []struct {
		name    string
		classes []networkingv1.IngressClass
		ing     *networkingv1.Ingress
		kind    Kind
		problem string
	}{
		{"class name", classes, ing(ptr.To("nginx"), ""), Nginx, ""},
		{"extra traefik controller name", classes, ing(ptr.To("public"), ""), Traefik, ""},
		{"unsupported controller", classes, ing(ptr.To("haproxy"), ""), Unsupported, `"haproxy.org/ingress-controller"`},
		{"missing class", classes, ing(ptr.To("gone"), ""), Unsupported, `IngressClass "gone" does not exist`},
		{"class name wins over the annotation", classes, ing(ptr.To("nginx"), "traefik"), Nginx, ""},
		{"legacy annotation naming a class", classes, ing(nil, "public"), Traefik, ""},
		{"legacy annotation, well-known value", classes, ing(nil, "traefik"), Traefik, ""},
		{"legacy annotation, unknown value", classes, ing(nil, "istio"), Unsupported, "names no IngressClass"},
		{"no class, no default", classes, ing(nil, ""), Unsupported, "no default IngressClass"},
		{"no class, one default", append(classes[1:], def("std")), ing(nil, ""), Nginx, ""},
		{"no class, two defaults", append(classes[1:], def("a"), def("b")), ing(nil, ""), Unsupported, "2 default IngressClasses (a, b)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := NewClassifier(o, tc.classes).Classify(tc.ing)
			if cl.Kind != tc.kind || !strings.Contains(cl.Problem, tc.problem) || (tc.problem == "") != (cl.Problem == "") {
				t.Errorf("classify: kind %d problem %q, want kind %d problem containing %q", cl.Kind, cl.Problem, tc.kind, tc.problem)
			}
		})
	}
}
func TestOwnership(t *testing.T) {
	at := func(sec int64) metav1.Time { return metav1.NewTime(time.Unix(1700000000+sec, 0)) }
	pol := func(name string, created metav1.Time, sel *metav1.LabelSelector, deleting bool) authv1alpha1.JWTPolicy {
		p := authv1alpha1.JWTPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: created}}
		p.Spec.IngressSelector = sel
		if deleting {
			p.DeletionTimestamp = ptr.To(at(100))
		}
		return p
	}
	match := func(v string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": v}}
	}
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "In"}}}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}}
	for _, tc := range []struct {
		name     string
		policies []authv1alpha1.JWTPolicy
		want     string
	}{
		{"nobody", []authv1alpha1.JWTPolicy{pol("a", at(0), match("other"), false)}, ""},
		{"absent selector selects all", []authv1alpha1.JWTPolicy{pol("a", at(0), nil, false)}, "a"},
		{"empty selector selects all", []authv1alpha1.JWTPolicy{pol("a", at(0), &metav1.LabelSelector{}, false)}, "a"},
		{"oldest wins over name", []authv1alpha1.JWTPolicy{pol("a", at(5), nil, false), pol("z", at(1), match("web"), false)}, "z"},
		{"same age: name", []authv1alpha1.JWTPolicy{pol("b", at(1), nil, false), pol("a", at(1), nil, false)}, "a"},
		{"deleting policy owns nothing", []authv1alpha1.JWTPolicy{pol("old", at(0), nil, true), pol("new", at(9), nil, false)}, "new"},
		{"invalid selector selects nothing", []authv1alpha1.JWTPolicy{pol("old", at(0), bad, false), pol("new", at(9), nil, false)}, "new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if p := NewOwnership(tc.policies).Owner(ing); p != nil {
				got = p.Name
			}
			if got != tc.want {
				t.Errorf("owner %q, want %q", got, tc.want)
			}
		})
	}
}
