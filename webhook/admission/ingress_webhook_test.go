package admission_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/internal/wiring"
)

// TestWiredOnFirstRead creates Ingresses in a guarded namespace and reads them the first way
// anyone can: the create response, and the ADDED event of a watch opened before the create.
// Both already carry the wiring (ingress-nginx annotations; Traefik's router.middlewares with
// claimguard's Middleware first, before it exists), with the user's own annotations kept.
func TestWiredOnFirstRead(t *testing.T) {
	ns := guardedNamespace(t, policyFixture("orders", selecting(map[string]string{"app": "shop"})))
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := wc.Watch(ctx, &networkingv1.IngressList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()

	mw := ns + "-claimguard-orders@kubernetescrd"
	for _, tc := range []struct {
		name, class string
		own, want   map[string]string
	}{
		{"nginx", nginxClass, map[string]string{"team": "shop"}, merged(nginxWiring(ns, "orders"), map[string]string{"team": "shop"})},
		{"traefik", traefikClass, map[string]string{wiring.AnnotationTraefikRouterMiddlewares: ns + "-ratelimit@kubernetescrd"},
			map[string]string{wiring.AnnotationPolicy: "orders", wiring.AnnotationTraefikRouterMiddlewares: mw + "," + ns + "-ratelimit@kubernetescrd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ing := ingressFixture(ns, tc.name, tc.class, map[string]string{"app": "shop"})
			ing.Annotations = maps.Clone(tc.own)
			create(t, ing) // the client reads the create response into ing
			if d := cmp.Diff(tc.want, ing.Annotations); d != "" {
				t.Errorf("create response (-want +got):\n%s", d)
			}
			// The first event of this Ingress (others are the reconciler's writes of the
			// Ingresses before it).
			timeout := time.After(10 * time.Second)
			for {
				select {
				case ev := <-w.ResultChan():
					got, ok := ev.Object.(*networkingv1.Ingress)
					if !ok || got.Name != tc.name {
						continue
					}
					if ev.Type != watch.Added {
						t.Fatalf("first event of %s is %s", tc.name, ev.Type)
					}
					if d := cmp.Diff(tc.want, got.Annotations); d != "" {
						t.Errorf("first watch event (-want +got):\n%s", d)
					}
				case <-timeout:
					t.Fatal("no watch event")
				}
				break
			}
		})
	}

	// Not selected, or of a class claimguard does not wire: left alone.
	plain := ingressFixture(ns, "other-app", nginxClass, map[string]string{"app": "blog"})
	create(t, plain)
	other := ingressFixture(ns, "haproxy", otherClass, map[string]string{"app": "shop"})
	create(t, other)
	for _, ing := range []*networkingv1.Ingress{plain, other} {
		if len(ing.Annotations) != 0 {
			t.Errorf("Ingress %s got annotations %v", ing.Name, ing.Annotations)
		}
	}
}

func merged(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// TestBypassAttempts tries, as a cluster administrator who is not claimguard, every way to
// take a guarded Ingress out from under its policy that the guard knows of. Each is refused,
// and each message names the policy, what was refused and what to do instead. Then the changes
// the guard must let through.
func TestBypassAttempts(t *testing.T) {
	ns := guardedNamespace(t, policyFixture("orders", selecting(map[string]string{"app": "shop"})))
	create(t, ingressFixture(ns, "web", nginxClass, map[string]string{"app": "shop"}))
	create(t, ingressFixture(ns, "route", traefikClass, map[string]string{"app": "shop"}))
	mw := ns + "-claimguard-orders@kubernetescrd"
	set := func(k, v string) func(*networkingv1.Ingress) {
		return func(i *networkingv1.Ingress) { i.Annotations[k] = v }
	}
	del := func(k string) func(*networkingv1.Ingress) {
		return func(i *networkingv1.Ingress) { delete(i.Annotations, k) }
	}
	nginx := func(name string) string { return "nginx.ingress.kubernetes.io/" + name }
	for _, tc := range []struct {
		name   string
		ing    string
		mutate func(*networkingv1.Ingress)
		want   string // what the refusal says was refused
	}{
		{"remove auth-url", "web", del(wiring.AnnotationNginxAuthURL), "it removes annotation nginx.ingress.kubernetes.io/auth-url"},
		{"point auth-url elsewhere", "web", set(wiring.AnnotationNginxAuthURL, "http://always-yes.example.com/"), "it sets annotation nginx.ingress.kubernetes.io/auth-url to a value claimguard does not set"},
		{"auth-url injection (CVE-2025-24514)", "web", set(wiring.AnnotationNginxAuthURL, "http://x/#;\nload_module /tmp/evil.so;"), "auth-url to a value claimguard does not set"},
		{"remove the policy annotation", "web", del(wiring.AnnotationPolicy), "it removes annotation auth.claimguard.dev/policy"},
		{"name another policy", "web", set(wiring.AnnotationPolicy, "lenient"), "auth.claimguard.dev/policy to a value claimguard does not set"},
		{"remove auth-response-headers", "web", del(wiring.AnnotationNginxAuthResponseHeaders), "it removes annotation nginx.ingress.kubernetes.io/auth-response-headers"},
		{"alter auth-keepalive", "web", set(wiring.AnnotationNginxAuthKeepalive, "0"), "auth-keepalive to a value claimguard does not set"},
		{"configuration-snippet", "web", set(nginx("configuration-snippet"), "auth_request off;"), "it adds annotation nginx.ingress.kubernetes.io/configuration-snippet: it adds raw nginx configuration to the location"},
		{"server-snippet", "web", set(nginx("server-snippet"), "location /admin { proxy_pass http://app; }"), "annotation nginx.ingress.kubernetes.io/server-snippet"},
		{"auth-snippet", "web", set(nginx("auth-snippet"), "return 200;"), "annotation nginx.ingress.kubernetes.io/auth-snippet"},
		{"stream-snippet", "web", set(nginx("stream-snippet"), "server { listen 9000; }"), "annotation nginx.ingress.kubernetes.io/stream-snippet"},
		{"auth-proxy-set-headers", "web", set(nginx("auth-proxy-set-headers"), ns+"/forged"), "can forge X-Original-URL"},
		{"auth-method", "web", set(nginx("auth-method"), "HEAD"), "annotation nginx.ingress.kubernetes.io/auth-method"},
		{"auth-cache-key", "web", set(nginx("auth-cache-key"), "$remote_addr"), "one user's allowed request could serve another user"},
		{"enable-global-auth false", "web", set(nginx("enable-global-auth"), "false"), "turns off the cluster-wide external auth"},
		{"satisfy any", "web", set(nginx("satisfy"), "any"), "without the token check"},
		{"basic auth instead", "web", func(i *networkingv1.Ingress) {
			i.Annotations[nginx("auth-type")] = "basic"
			i.Annotations[nginx("auth-secret")] = "htpasswd"
		}, "annotation nginx.ingress.kubernetes.io/auth-type"},
		{"auth-signin injection", "web", set(nginx("auth-signin"), `https://login.example.com/"; return 200; #`), "an injection"},
		{"auth-tls-match-cn injection (CVE-2025-1097)", "web", set(nginx("auth-tls-match-cn"), "CN=a\"}\nlocation /x {"), "an injection"},
		{"labels drop out of the selection", "web", func(i *networkingv1.Ingress) { i.Labels["app"] = "unguarded" }, "its labels no longer match spec.ingressSelector of JWTPolicy orders"},
		{"class claimguard cannot wire", "web", func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To(otherClass) }, "it moves to an ingress class claimguard cannot wire"},
		{"class that does not exist", "web", func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To("nowhere") }, `IngressClass "nowhere" does not exist`},
		{"traefik: a middleware before claimguard's", "route", set(wiring.AnnotationTraefikRouterMiddlewares, ns+"-strip@kubernetescrd,"+mw), "does not start with " + mw},
		{"traefik: claimguard's middleware removed", "route", set(wiring.AnnotationTraefikRouterMiddlewares, ns+"-strip@kubernetescrd"), "does not start with " + mw},
		{"traefik: annotation removed", "route", del(wiring.AnnotationTraefikRouterMiddlewares), "does not start with " + mw},
		{"traefik: a reserved name", "route", set(wiring.AnnotationTraefikRouterMiddlewares, mw+","+ns+"-claimguard-lenient@kubernetescrd"), "a claimguard Middleware"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := getIngress(t, env.Client, ns, tc.ing)
			err := tryUpdate(env.Client, ns, tc.ing, tc.mutate)
			if err == nil {
				t.Fatal("the change was admitted")
			}
			for _, want := range []string{
				`admission webhook "vingress.claimguard.dev" denied the request`,
				fmt.Sprintf("claimguard refused this change to Ingress %s/%s, which JWTPolicy orders guards", ns, tc.ing),
				tc.want,
				"edit JWTPolicy " + ns + "/orders",
				"ask a cluster administrator to exempt it (label auth.claimguard.dev/exempt=true)",
			} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %q:\n%v", want, err)
				}
			}
			// The controller may write the same values meanwhile (taking over the fields the
			// mutating webhook set), so compare content, not resourceVersions.
			after := getIngress(t, env.Client, ns, tc.ing)
			if d := cmp.Diff(before.Annotations, after.Annotations); d != "" {
				t.Errorf("annotations changed (-before +after):\n%s", d)
			}
			if d := cmp.Diff(before.Labels, after.Labels); d != "" {
				t.Errorf("labels changed (-before +after):\n%s", d)
			}
			if d := cmp.Diff(before.Spec, after.Spec); d != "" {
				t.Errorf("spec changed (-before +after):\n%s", d)
			}
		})
	}

	// What the guard lets through.
	for _, tc := range []struct {
		name   string
		ing    string
		mutate func(*networkingv1.Ingress)
	}{
		{"a label the selector does not look at", "web", func(i *networkingv1.Ingress) { i.Labels["team"] = "payments" }},
		{"an allow-list (not a bypass with satisfy all)", "web", set(nginx("whitelist-source-range"), "10.0.0.0/8")},
		{"satisfy all", "web", set(nginx("satisfy"), "all")},
		{"a sign-in redirect for 401s", "web", set(nginx("auth-signin"), "https://$host/oauth2/start?rd=$escaped_request_uri")},
		{"client certificates on top", "web", set(nginx("auth-tls-verify-client"), "on")},
		{"unrelated nginx settings", "web", set(nginx("proxy-body-size"), "8m")},
		{"the backend", "web", func(i *networkingv1.Ingress) { i.Spec.DefaultBackend.Service.Name = "app-v2" }},
		{"traefik: own middleware after claimguard's", "route", set(wiring.AnnotationTraefikRouterMiddlewares, mw+","+ns+"-strip@kubernetescrd")},
		{"traefik to nginx (both wired)", "route", func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To(nginxClass) }},
	} {
		t.Run("allowed/"+tc.name, func(t *testing.T) {
			if err := tryUpdate(env.Client, ns, tc.ing, tc.mutate); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
	// The class change was wired at admission: nginx annotations added, user middleware kept.
	got := getIngress(t, env.Client, ns, "route")
	for k, v := range nginxWiring(ns, "orders") {
		if got.Annotations[k] != v {
			t.Errorf("after the move to ingress-nginx, %s is %q, want %q", k, got.Annotations[k], v)
		}
	}
}

// TestExistingBypassWarns: an annotation the guard refuses, present before the Ingress was
// guarded, does not block unrelated changes (they do not add it) but is named in a warning,
// which kubectl prints; changing it is refused.
func TestExistingBypassWarns(t *testing.T) {
	ns := newNamespace(t)
	snippet := "nginx.ingress.kubernetes.io/configuration-snippet"
	ing := ingressFixture(ns, "legacy", nginxClass, map[string]string{"app": "shop"})
	ing.Annotations = map[string]string{snippet: `more_set_headers "X-Frame-Options: DENY";`}
	create(t, ing)
	p := policyFixture("orders")
	p.Namespace = ns
	create(t, p)
	waitGuarded(t, ns)
	testenv.Eventually(t, 10*time.Second, "wired by the reconciler", func() error {
		if got := getIngress(t, env.Client, ns, "legacy").Annotations[wiring.AnnotationPolicy]; got != "orders" {
			return fmt.Errorf("policy annotation %q", got)
		}
		return nil
	})

	_, stderr, err := kubectl(t, "", "label", "ingress", "-n", ns, "legacy", "tier=frontend")
	if err != nil {
		t.Fatalf("an unrelated change was refused: %v\n%s", err, stderr)
	}
	want := fmt.Sprintf("Warning: Ingress %s/legacy: annotation %s stays, but it adds raw nginx configuration to the location", ns, snippet)
	if !strings.Contains(stderr, want) {
		t.Errorf("kubectl's stderr does not say %q:\n%s", want, stderr)
	}
	_, stderr, err = kubectl(t, "", "annotate", "--overwrite", "ingress", "-n", ns, "legacy", snippet+"=auth_request off;")
	if err == nil || !strings.Contains(stderr, "it changes annotation "+snippet) {
		t.Errorf("changing the snippet: err %v, stderr:\n%s", err, stderr)
	}
}

// TestReconcilerWritesPassTheGuard: the reconciler's own writes (here as a cluster
// administrator, not the trusted service account) are judged like anyone's and pass: handing an
// Ingress over when its policy is deleted, and unwiring it when the last policy goes.
func TestReconcilerWritesPassTheGuard(t *testing.T) {
	ns := guardedNamespace(t, policyFixture("first"), policyFixture("second"))
	create(t, ingressFixture(ns, "web", nginxClass, nil))
	if got := getIngress(t, env.Client, ns, "web").Annotations[wiring.AnnotationPolicy]; got != "first" {
		t.Fatalf("wired to %q at admission, want the oldest policy", got)
	}
	deletePolicy(t, ns, "first")
	testenv.Eventually(t, 10*time.Second, "handed over", func() error {
		got := getIngress(t, env.Client, ns, "web").Annotations
		if d := cmp.Diff(nginxWiring(ns, "second"), got); d != "" {
			return fmt.Errorf("(-want +got):\n%s", d)
		}
		return nil
	})
	deletePolicy(t, ns, "second")
	testenv.Eventually(t, 10*time.Second, "unwired", func() error {
		if got := getIngress(t, env.Client, ns, "web").Annotations; len(got) != 0 {
			return fmt.Errorf("annotations %v", got)
		}
		return nil
	})
}

func deletePolicy(t *testing.T, ns, name string) {
	t.Helper()
	if err := env.Client.Delete(context.Background(), &authv1alpha1.JWTPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
		t.Fatal(err)
	}
}

// userClient is a client authenticated as a new user of the API server.
func userClient(t *testing.T, name string, groups ...string) client.Client {
	t.Helper()
	u, err := env.AddUser(envtest.User{Name: name, Groups: groups}, env.Config)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(u.Config(), client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// canEditIngresses binds user to a Role of namespace ns that edits Ingresses: a tenant.
func canEditIngresses(t *testing.T, ns, user string) {
	t.Helper()
	create(t, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ingress-editor-" + strings.ReplaceAll(user, ":", "-")},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"},
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}}},
	})
	bind(t, ns, "Role", "ingress-editor-"+strings.ReplaceAll(user, ":", "-"), user)
}

func bind(t *testing.T, ns, kind, role, user string) {
	t.Helper()
	create(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: strings.ToLower(kind) + "-" + role + "-" + strings.ReplaceAll(user, ":", "-")},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	})
}

// TestExemption: a tenant who edits Ingresses cannot exempt one; a cluster administrator can,
// and then may add what the guard refuses. The exemption does not cover the tenant's own later
// changes. The documented ClusterRole lets the tenant exempt too; an exempt namespace is not
// guarded at all.
func TestExemption(t *testing.T) {
	ns := guardedNamespace(t, policyFixture("orders"))
	create(t, ingressFixture(ns, "web", nginxClass, nil))
	tenant := userClient(t, "tenant-"+ns)
	canEditIngresses(t, ns, "tenant-"+ns)
	exempt := func(i *networkingv1.Ingress) { i.Labels[wiring.LabelExempt] = "true" }
	snippet := "nginx.ingress.kubernetes.io/configuration-snippet"

	err := tryUpdate(tenant, ns, "web", exempt)
	if err == nil || !strings.Contains(err.Error(), `it adds the label auth.claimguard.dev/exempt=true`) ||
		!strings.Contains(err.Error(), `Only users allowed the verb "exempt" on resource jwtpolicies (group auth.claimguard.dev) in namespace `+ns) {
		t.Fatalf("a tenant exempted an Ingress: %v", err)
	}
	if err := tryUpdate(env.Client, ns, "web", exempt); err != nil {
		t.Fatalf("a cluster administrator could not exempt: %v", err)
	}
	if err := tryUpdate(env.Client, ns, "web", func(i *networkingv1.Ingress) { i.Annotations[snippet] = "more_set_headers \"X-Frame-Options: DENY\";" }); err != nil {
		t.Fatalf("an administrator's change to an exempt Ingress was refused: %v", err)
	}
	// The tenant may still make changes the guard allows (the vetted snippet stays) ...
	if err := tryUpdate(tenant, ns, "web", func(i *networkingv1.Ingress) { i.Labels["tier"] = "frontend" }); err != nil {
		t.Fatalf("a tenant's harmless change to an exempt Ingress: %v", err)
	}
	// ... but not use the exemption.
	err = tryUpdate(tenant, ns, "web", func(i *networkingv1.Ingress) {
		i.Annotations["nginx.ingress.kubernetes.io/server-snippet"] = "location /x {}"
	})
	if err == nil || !strings.Contains(err.Error(), "The Ingress is exempt, but only for users allowed the verb") {
		t.Fatalf("a tenant used an administrator's exemption: %v", err)
	}

	// The ClusterRole of docs/admission.md, bound in the namespace: the tenant may exempt.
	create(t, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "claimguard-exempt-" + ns},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"auth.claimguard.dev"}, Resources: []string{"jwtpolicies"}, Verbs: []string{"exempt"}}},
	})
	bind(t, ns, "ClusterRole", "claimguard-exempt-"+ns, "tenant-"+ns)
	create(t, ingressFixture(ns, "api", nginxClass, nil))
	testenv.Eventually(t, 5*time.Second, "exempted by the tenant with the ClusterRole", func() error { return tryUpdate(tenant, ns, "api", exempt) })

	// An exempt namespace (an administrator's label): not guarded at all.
	ns2 := guardedNamespace(t, policyFixture("orders"))
	create(t, ingressFixture(ns2, "web", nginxClass, nil))
	tenant2 := userClient(t, "tenant-"+ns2)
	canEditIngresses(t, ns2, "tenant-"+ns2)
	bypass := func(i *networkingv1.Ingress) { i.Annotations[snippet] = "auth_request off;" }
	if err := tryUpdate(tenant2, ns2, "web", bypass); err == nil {
		t.Fatal("the guard let a bypass through before the namespace was exempt")
	}
	labelNamespace(t, ns2, wiring.LabelExempt, "true")
	testenv.Eventually(t, 5*time.Second, "a bypass in an exempt namespace", func() error { return tryUpdate(tenant2, ns2, "web", bypass) })
}

// TestTrustedServiceAccount: claimguard's own service account (here a user of that name who
// may edit Ingresses) is not guarded: it is the one that hands Ingresses over and unwires them.
func TestTrustedServiceAccount(t *testing.T) {
	ns := guardedNamespace(t, policyFixture("orders"))
	create(t, ingressFixture(ns, "web", nginxClass, nil))
	sa := userClient(t, trustedSA, "system:serviceaccounts")
	canEditIngresses(t, ns, trustedSA)
	if err := tryUpdate(sa, ns, "web", func(i *networkingv1.Ingress) {
		for k := range nginxWiring(ns, "orders") {
			delete(i.Annotations, k)
		}
	}); err != nil {
		t.Fatalf("claimguard's service account was refused: %v", err)
	}
	// Another service account of the same namespace is not claimguard.
	other := "system:serviceaccount:claimguard-system:other"
	oc := userClient(t, other, "system:serviceaccounts")
	canEditIngresses(t, ns, other)
	create(t, ingressFixture(ns, "api", nginxClass, nil))
	if err := tryUpdate(oc, ns, "api", func(i *networkingv1.Ingress) { delete(i.Annotations, wiring.AnnotationNginxAuthURL) }); err == nil {
		t.Fatal("another service account removed the wiring")
	}
}

// TestOutageScope stops the webhook server: Ingress changes in namespaces claimguard does not
// guard, and in kube-system even with a policy there, go through as if claimguard were not
// installed, while in a guarded namespace they are refused (failurePolicy Fail) until it is
// back.
func TestOutageScope(t *testing.T) {
	guarded := guardedNamespace(t, policyFixture("orders"))
	plain := newNamespace(t)
	sys := policyFixture("cg-outage-test")
	sys.Namespace = "kube-system"
	create(t, sys)
	t.Cleanup(func() { deletePolicy(t, "kube-system", sys.Name) })
	waitGuarded(t, "kube-system")
	mgr.stop()
	defer func() {
		var err error
		if mgr, err = startManager(); err != nil {
			t.Fatalf("restart the manager: %v", err)
		}
	}()

	for _, ns := range []string{plain, "kube-system"} {
		ing := ingressFixture(ns, "while-down", otherClass, nil)
		create(t, ing)
		if err := tryUpdate(env.Client, ns, "while-down", func(i *networkingv1.Ingress) { i.Annotations["x"] = "y" }); err != nil {
			t.Errorf("namespace %s: an update failed while claimguard was down: %v", ns, err)
		}
		if err := env.Client.Delete(context.Background(), ing); err != nil {
			t.Error(err)
		}
	}
	err := env.Client.Create(context.Background(), ingressFixture(guarded, "while-down", nginxClass, nil))
	if err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Errorf("guarded namespace while claimguard is down: %v, want a refusal (failed calling webhook)", err)
	}
}

func waitGuarded(t *testing.T, ns string) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, "namespace labelled guarded", func() error {
		n := &corev1.Namespace{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: ns}, n); err != nil {
			return err
		}
		if n.Labels[wiring.LabelGuarded] != "true" {
			return fmt.Errorf("labels %v", n.Labels)
		}
		return nil
	})
}

func labelNamespace(t *testing.T, ns, key, value string) {
	t.Helper()
	n := &corev1.Namespace{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: ns}, n); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(n.DeepCopy())
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	n.Labels[key] = value
	if err := env.Client.Patch(context.Background(), n, patch); err != nil {
		t.Fatal(err)
	}
}
