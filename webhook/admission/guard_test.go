package admission

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

func TestBypass(t *testing.T) {
	for _, tc := range []struct {
		key, value string
		refused    bool
	}{
		{"nginx.ingress.kubernetes.io/configuration-snippet", "", true},
		{"nginx.ingress.kubernetes.io/modsecurity-snippet", "SecRuleEngine Off", true},
		{"nginx.ingress.kubernetes.io/auth-cache-duration", "200 5m", true},
		{"nginx.ingress.kubernetes.io/auth-request-redirect", "/x", true},
		{"nginx.ingress.kubernetes.io/enable-global-auth", " FALSE ", true},
		{"nginx.ingress.kubernetes.io/enable-global-auth", "true", false},
		{"nginx.ingress.kubernetes.io/satisfy", "Any", true},
		{"nginx.ingress.kubernetes.io/satisfy", "all", false},
		{"nginx.ingress.kubernetes.io/auth-signin", "https://$host/oauth2/start?rd=$escaped_request_uri", false},
		{"nginx.ingress.kubernetes.io/auth-signin", "/oauth2/start", true},
		{"nginx.ingress.kubernetes.io/auth-signin", "https://a/{", true},
		{"nginx.ingress.kubernetes.io/auth-signin-redirect-param", "rd", false},
		{"nginx.ingress.kubernetes.io/auth-tls-secret", "shop/ca", false},
		{"nginx.ingress.kubernetes.io/auth-tls-match-cn", "CN=client|CN=other", false},
		{"nginx.ingress.kubernetes.io/auth-tls-match-cn", "CN=a\nx", true},
		{"nginx.ingress.kubernetes.io/whitelist-source-range", "10.0.0.0/8", false},
		{"nginx.ingress.kubernetes.io/denylist-source-range", "1.2.3.4/32", false},
		// Managed annotations are judged by judgeWiring, not here.
		{wiring.AnnotationNginxAuthURL, "http://evil", false},
		{"example.com/configuration-snippet", "x", false},
	} {
		why, refused := bypass(tc.key, tc.value)
		if refused != tc.refused || refused && why == "" {
			t.Errorf("bypass(%q, %q) = %q, %v; want refused=%v with a reason", tc.key, tc.value, why, refused, tc.refused)
		}
	}
}

// guardFixture is a namespace with policy "orders" (selecting app=shop) and an older policy
// "legacy" (selecting app=legacy), and an nginx and a Traefik class.
func guardFixture() (*wiring.Ownership, *wiring.Classifier) {
	at := func(s int64) metav1.Time { return metav1.NewTime(time.Unix(1700000000+s, 0)) }
	pols := []authv1alpha1.JWTPolicy{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders", CreationTimestamp: at(10)},
			Spec: authv1alpha1.JWTPolicySpec{IngressSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "shop"}},
				ForwardClaims: []authv1alpha1.ForwardClaim{{Claim: "sub", Header: "X-Auth-Subject"}}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "legacy", CreationTimestamp: at(0)},
			Spec: authv1alpha1.JWTPolicySpec{IngressSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "legacy"}}}},
	}
	classes := []networkingv1.IngressClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: wiring.DefaultNginxController}},
		{ObjectMeta: metav1.ObjectMeta{Name: "traefik"}, Spec: networkingv1.IngressClassSpec{Controller: wiring.DefaultTraefikController}},
	}
	return wiring.NewOwnership(pols), wiring.NewClassifier(wiring.DefaultOptions(), classes)
}

func ingress(class, app string, ann map[string]string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Labels: map[string]string{"app": app}, Annotations: ann},
		Spec:       networkingv1.IngressSpec{IngressClassName: ptr.To(class)},
	}
}

func TestJudge(t *testing.T) {
	own, cls := guardFixture()
	opts := wiring.DefaultOptions()
	orders := own.Lookup("orders")
	wired := wiring.DesiredAnnotations(opts, orders, ingress("nginx", "shop", nil), wiring.Nginx, nil)
	with := func(extra map[string]string, drop ...string) map[string]string {
		out := map[string]string{}
		for k, v := range wired {
			out[k] = v
		}
		for k, v := range extra {
			out[k] = v
		}
		for _, k := range drop {
			delete(out, k)
		}
		return out
	}
	stale := with(map[string]string{wiring.AnnotationNginxAuthResponseHeaders: "X-Old"})
	for _, tc := range []struct {
		name     string
		old, new *networkingv1.Ingress
		refusals []string // substrings, one per refusal, in order
		warnings int
	}{
		{"create, wired", nil, ingress("nginx", "shop", wired), nil, 0},
		{"create, not yet wired (the reconciler will)", nil, ingress("nginx", "shop", nil), nil, 0},
		{"create with someone else's auth-url", nil, ingress("nginx", "shop", with(map[string]string{wiring.AnnotationNginxAuthURL: "http://x"})), []string{"auth-url to a value"}, 0},
		{"a stale value left as it was", ingress("nginx", "shop", stale), ingress("nginx", "shop", with(map[string]string{wiring.AnnotationNginxAuthResponseHeaders: "X-Old", "x": "y"})), nil, 0},
		{"a stale value corrected", ingress("nginx", "shop", stale), ingress("nginx", "shop", wired), nil, 0},
		{"a stale value altered", ingress("nginx", "shop", stale), ingress("nginx", "shop", with(map[string]string{wiring.AnnotationNginxAuthResponseHeaders: "X-New"})), []string{"auth-response-headers"}, 0},
		{"two refusals at once", ingress("nginx", "shop", wired), ingress("nginx", "shop", with(map[string]string{"nginx.ingress.kubernetes.io/server-snippet": "x"}, wiring.AnnotationNginxAuthURL)),
			[]string{"removes annotation nginx.ingress.kubernetes.io/auth-url", "adds annotation nginx.ingress.kubernetes.io/server-snippet"}, 0},
		{"move to an older policy by labels", ingress("nginx", "shop", wired), ingress("nginx", "legacy", wired), []string{"move it from JWTPolicy orders to JWTPolicy legacy"}, 0},
		{"labels into a selection with a bypass", ingress("nginx", "none", map[string]string{"nginx.ingress.kubernetes.io/configuration-snippet": "x"}),
			ingress("nginx", "shop", map[string]string{"nginx.ingress.kubernetes.io/configuration-snippet": "x"}), []string{"brings the Ingress under the guard with annotation nginx.ingress.kubernetes.io/configuration-snippet"}, 0},
		{"a bypass kept under the same policy", ingress("nginx", "shop", with(map[string]string{"nginx.ingress.kubernetes.io/configuration-snippet": "x"})),
			ingress("nginx", "shop", with(map[string]string{"nginx.ingress.kubernetes.io/configuration-snippet": "x", "y": "z"})), nil, 1},
		{"unguarded Ingress: anything goes", nil, ingress("nginx", "none", map[string]string{"nginx.ingress.kubernetes.io/auth-url": "http://x", "nginx.ingress.kubernetes.io/server-snippet": "x"}), nil, 0},
		{"nginx annotations left after a move to Traefik", ingress("nginx", "shop", wired),
			ingress("traefik", "shop", with(map[string]string{wiring.AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd"})), nil, 0},
		{"nginx annotations dropped after a move to Traefik", ingress("nginx", "shop", wired),
			ingress("traefik", "shop", map[string]string{wiring.AnnotationPolicy: "orders", wiring.AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd"}), nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := judge(&change{old: tc.old, new: tc.new, own: own, cls: cls, opts: opts})
			if len(v.refusals) != len(tc.refusals) {
				t.Fatalf("refusals %q, want %d", v.refusals, len(tc.refusals))
			}
			for i, want := range tc.refusals {
				if !strings.Contains(v.refusals[i], want) {
					t.Errorf("refusal %d %q does not say %q", i, v.refusals[i], want)
				}
			}
			if len(v.warnings) != tc.warnings {
				t.Errorf("warnings %q, want %d", v.warnings, tc.warnings)
			}
		})
	}
}

func TestAddWiring(t *testing.T) {
	opts := wiring.DefaultOptions()
	own, _ := guardFixture()
	orders := own.Lookup("orders")
	mw := "shop-claimguard-orders@kubernetescrd"
	for _, tc := range []struct {
		name     string
		kind     wiring.Kind
		old, new map[string]string
		want     map[string]string
	}{
		{"create: everything", wiring.Nginx, nil, map[string]string{"team": "a"},
			merge(wiring.DesiredAnnotations(opts, orders, ingress("nginx", "shop", nil), wiring.Nginx, nil), map[string]string{"team": "a"})},
		{"a value set by the request is not overwritten", wiring.Nginx, nil, map[string]string{wiring.AnnotationNginxAuthURL: "http://x"},
			merge(wiring.DesiredAnnotations(opts, orders, ingress("nginx", "shop", nil), wiring.Nginx, nil), map[string]string{wiring.AnnotationNginxAuthURL: "http://x"})},
		{"a removal by the request is not undone", wiring.Nginx, map[string]string{wiring.AnnotationPolicy: "orders"}, map[string]string{},
			func() map[string]string {
				m := wiring.DesiredAnnotations(opts, orders, ingress("nginx", "shop", nil), wiring.Nginx, nil)
				delete(m, wiring.AnnotationPolicy)
				return m
			}()},
		{"traefik: first, user's kept", wiring.Traefik, nil, map[string]string{wiring.AnnotationTraefikRouterMiddlewares: "shop-a@kubernetescrd"},
			map[string]string{wiring.AnnotationPolicy: "orders", wiring.AnnotationTraefikRouterMiddlewares: mw + ",shop-a@kubernetescrd"}},
		{"traefik: already first", wiring.Traefik, nil, map[string]string{wiring.AnnotationTraefikRouterMiddlewares: mw},
			map[string]string{wiring.AnnotationPolicy: "orders", wiring.AnnotationTraefikRouterMiddlewares: mw}},
		{"traefik: removed by the request", wiring.Traefik, map[string]string{wiring.AnnotationTraefikRouterMiddlewares: mw}, map[string]string{wiring.AnnotationTraefikRouterMiddlewares: "shop-a@kubernetescrd"},
			map[string]string{wiring.AnnotationPolicy: "orders", wiring.AnnotationTraefikRouterMiddlewares: "shop-a@kubernetescrd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var old *networkingv1.Ingress
			if tc.old != nil {
				old = ingress("x", "shop", tc.old)
			}
			ing := ingress("x", "shop", tc.new)
			addWiring(opts, orders, tc.kind, old, ing)
			if d := cmp.Diff(tc.want, ing.Annotations); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func merge(a, b map[string]string) map[string]string {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// TestLegacyPolicyMetadataUpdate: a stored policy that no longer compiles (stored before a check
// existed) can still get its finalizer removed, so it can be deleted; a spec change is checked.
func TestLegacyPolicyMetadataUpdate(t *testing.T) {
	v := &JWTPolicyValidator{}
	old := &authv1alpha1.JWTPolicy{ObjectMeta: metav1.ObjectMeta{Name: "old", Finalizers: []string{"auth.claimguard.dev/unwire"}},
		Spec: authv1alpha1.JWTPolicySpec{Rules: []authv1alpha1.Rule{{Expression: "claims.exp -"}}}}
	updated := old.DeepCopy()
	updated.Finalizers = nil
	if _, err := v.ValidateUpdate(context.Background(), old, updated); err != nil {
		t.Errorf("metadata-only update refused: %v", err)
	}
	updated.Spec.Rules[0].Expression = "claims.exp - "
	if _, err := v.ValidateUpdate(context.Background(), old, updated); err == nil {
		t.Error("a spec change of a policy that does not compile was admitted")
	}
}

func TestTruncate(t *testing.T) {
	s := strings.Repeat("é", 200)
	got := truncate(s, 101)
	if len(got) > 101 || !strings.HasSuffix(got, " ...") || !strings.HasPrefix(s, strings.TrimSuffix(got, " ...")) {
		t.Errorf("truncate cut a rune or overran: %d bytes", len(got))
	}
	if truncate("short", 10) != "short" {
		t.Error("a short string changed")
	}
}
