package controllers

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/testenv"
)

var traefikCRDOnce sync.Once

// installTraefikCRD installs the trimmed Middleware CRD of testdata/crds once and waits until
// it is served.
func installTraefikCRD(t *testing.T) {
	t.Helper()
	var err error
	traefikCRDOnce.Do(func() {
		_, err = envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{
			Paths:              []string{filepath.Join("testdata", "crds")},
			ErrorIfPathMissing: true,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func getMiddleware(ns, name string) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(MiddlewareGVK)
	err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, u)
	return u, err
}

// middlewareIs waits for the Middleware of policy with the address and headers it should have,
// controlled by the policy.
func middlewareIs(ns, policyName string, headers []string) func() error {
	return func() error {
		u, err := getMiddleware(ns, MiddlewareName(policyName))
		if err != nil {
			return err
		}
		addr, _, _ := unstructured.NestedString(u.Object, "spec", "forwardAuth", "address")
		if want := fmt.Sprintf("http://claimguard.claimguard-system.svc:8443/authz/%s/%s", ns, policyName); addr != want {
			return fmt.Errorf("address %q, want %q", addr, want)
		}
		h, _, _ := unstructured.NestedStringSlice(u.Object, "spec", "forwardAuth", "authResponseHeaders")
		if d := cmp.Diff(headers, h); d != "" {
			return fmt.Errorf("authResponseHeaders (-want +got):\n%s", d)
		}
		refs := u.GetOwnerReferences()
		if len(refs) != 1 || refs[0].Kind != "JWTPolicy" || refs[0].Name != policyName || !ptr.Deref(refs[0].Controller, false) {
			return fmt.Errorf("ownerReferences %v", refs)
		}
		return nil
	}
}

func traefikWiring(ns, policyName, user string) map[string]string {
	v := ns + "-claimguard-" + policyName + "@kubernetescrd"
	if user != "" {
		v += "," + user
	}
	return map[string]string{AnnotationPolicy: policyName, AnnotationTraefikRouterMiddlewares: v}
}

// TestTraefikCRDInstalledLater starts without Traefik's CRD: a Traefik Ingress is reported,
// not touched; once the CRD is installed it is picked up without a restart. Not parallel: it
// must run before any test installs the CRD.
func TestTraefikCRDInstalledLater(t *testing.T) {
	ns := newNamespace(t)
	startManager(t, ns, harnessOptions{})
	userMW := ns + "-auth@kubernetescrd"
	ing := ingressFixture(ns, "route", ptr.To(traefikClass), nil)
	ing.Annotations = map[string]string{AnnotationTraefikRouterMiddlewares: userMW}
	create(t, ing)
	create(t, policyFixture(ns, "orders"))

	testenv.Eventually(t, 10*time.Second, "MiddlewareCRDMissing", conditionIs(ns, "orders", authv1alpha1.ConditionIngressesWired, metav1.ConditionFalse, authv1alpha1.ReasonMiddlewareCRDMissing))
	testenv.Eventually(t, 5*time.Second, "Ready False", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonNotReady))
	if err := annotationsAre(ns, "route", map[string]string{AnnotationTraefikRouterMiddlewares: userMW})(); err != nil {
		t.Fatalf("touched without the CRD: %v", err)
	}
	msg := getCondition(getPolicy(t, ns, "orders").Status.Conditions, authv1alpha1.ConditionIngressesWired).Message
	if !strings.Contains(msg, "route") || !strings.Contains(msg, "middlewares.traefik.io") {
		t.Errorf("message does not name the Ingress and the CRD: %q", msg)
	}

	installTraefikCRD(t)
	testenv.Eventually(t, 15*time.Second, "wired after the CRD appeared", annotationsAre(ns, "route", traefikWiring(ns, "orders", userMW)))
	testenv.Eventually(t, 5*time.Second, "Middleware", middlewareIs(ns, "orders", []string{"X-Auth-Subject"}))
	testenv.Eventually(t, 5*time.Second, "Ready", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
}

// TestTraefikWiring runs with the CRD present from the start.
func TestTraefikWiring(t *testing.T) {
	t.Parallel()
	installTraefikCRD(t)
	ns := newNamespace(t)
	startManager(t, ns, harnessOptions{})
	ctx := context.Background()
	userMW := ns + "-auth@kubernetescrd," + "other-ns-ratelimit@kubernetescrd"
	ing := ingressFixture(ns, "route", ptr.To(traefikClass), map[string]string{"app": "route"})
	ing.Annotations = map[string]string{AnnotationTraefikRouterMiddlewares: userMW}
	create(t, ing)
	create(t, policyFixture(ns, "orders", withSelector(map[string]string{"app": "route"})))

	testenv.Eventually(t, 10*time.Second, "wired, claimguard first", annotationsAre(ns, "route", traefikWiring(ns, "orders", userMW)))
	testenv.Eventually(t, 5*time.Second, "Middleware", middlewareIs(ns, "orders", []string{"X-Auth-Subject"}))
	testenv.Eventually(t, 5*time.Second, "Ready", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))

	// The Middleware is deleted by hand: it comes back.
	mw, err := getMiddleware(ns, MiddlewareName("orders"))
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, mw); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "Middleware restored", func() error {
		u, err := getMiddleware(ns, MiddlewareName("orders"))
		if err != nil {
			return err
		}
		if u.GetUID() == mw.GetUID() {
			return fmt.Errorf("old Middleware still there")
		}
		return nil
	})

	// The user rewrites router.middlewares without claimguard's entry: it is put back first.
	update(t, getIngress(t, ns, "route"), func(i *networkingv1.Ingress) {
		i.Annotations[AnnotationTraefikRouterMiddlewares] = ns + "-auth@kubernetescrd"
	})
	testenv.Eventually(t, 10*time.Second, "re-wired first", annotationsAre(ns, "route", traefikWiring(ns, "orders", ns+"-auth@kubernetescrd")))

	// The Ingress moves to ingress-nginx: nginx wiring, the user's middlewares stay, the
	// unused Middleware goes.
	update(t, getIngress(t, ns, "route"), func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To(nginxClass) })
	testenv.Eventually(t, 10*time.Second, "nginx wiring", annotationsAre(ns, "route",
		merged(nginxWiring(ns, "orders", "X-Auth-Subject"), map[string]string{AnnotationTraefikRouterMiddlewares: ns + "-auth@kubernetescrd"})))
	testenv.Eventually(t, 10*time.Second, "Middleware deleted", func() error {
		if _, err := getMiddleware(ns, MiddlewareName("orders")); !apierrors.IsNotFound(err) {
			return fmt.Errorf("Middleware still there (%v)", err)
		}
		return nil
	})

	// Back to Traefik, then the policy is deleted: only the user's middlewares remain.
	update(t, getIngress(t, ns, "route"), func(i *networkingv1.Ingress) { i.Spec.IngressClassName = ptr.To(traefikClass) })
	testenv.Eventually(t, 10*time.Second, "Traefik again", annotationsAre(ns, "route", traefikWiring(ns, "orders", ns+"-auth@kubernetescrd")))
	if err := env.Client.Delete(ctx, getPolicy(t, ns, "orders")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "unwired", annotationsAre(ns, "route", map[string]string{AnnotationTraefikRouterMiddlewares: ns + "-auth@kubernetescrd"}))
}

// TestTraefikWiringFailed: a Middleware that the API server refuses (its name would exceed
// 253 characters) is reported as WiringFailed, and the Ingress is left alone.
func TestTraefikWiringFailed(t *testing.T) {
	t.Parallel()
	installTraefikCRD(t)
	ns := newNamespace(t)
	startManager(t, ns, harnessOptions{})
	name := strings.Repeat("p", 250)
	create(t, ingressFixture(ns, "route", ptr.To(traefikClass), nil))
	create(t, policyFixture(ns, name))
	testenv.Eventually(t, 10*time.Second, "WiringFailed", conditionIs(ns, name, authv1alpha1.ConditionIngressesWired, metav1.ConditionFalse, authv1alpha1.ReasonWiringFailed))
	testenv.Eventually(t, 5*time.Second, "Ready False", conditionIs(ns, name, authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonNotReady))
	if err := annotationsAre(ns, "route", map[string]string{})(); err != nil {
		t.Error(err)
	}
}
