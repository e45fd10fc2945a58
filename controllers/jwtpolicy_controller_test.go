package controllers

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/testenv"
)

// nginxWiring is what an Ingress of an ingress-nginx class carries when policy guards it.
func nginxWiring(ns, name, headers string) map[string]string {
	w := map[string]string{
		AnnotationPolicy:                     name,
		AnnotationNginxAuthURL:               fmt.Sprintf("http://claimguard.claimguard-system.svc:8443/authz/%s/%s", ns, name),
		AnnotationNginxAuthKeepalive:         "32",
		AnnotationNginxAuthKeepaliveRequests: "10000",
		AnnotationNginxAuthKeepaliveTimeout:  "60",
	}
	if headers != "" {
		w[AnnotationNginxAuthResponseHeaders] = headers
	}
	return w
}

// annotationsAre waits until the Ingress carries exactly want (plus the user's own, given).
func annotationsAre(ns, name string, want map[string]string) func() error {
	return func() error {
		ing := &networkingv1.Ingress{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, ing); err != nil {
			return err
		}
		got := maps.Clone(ing.Annotations)
		if got == nil {
			got = map[string]string{}
		}
		if d := cmp.Diff(want, got); d != "" {
			return fmt.Errorf("annotations of %s (-want +got):\n%s", name, d)
		}
		return nil
	}
}

func merged(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// TestNginxLifecycle follows one policy from creation to deletion: wiring, status, served
// decisions, spec and selector changes, an edit that removes the wiring, and the finalizer.
func TestNginxLifecycle(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	h := startManager(t, ns, harnessOptions{})
	ctx := context.Background()

	user := map[string]string{"team": "orders"}
	ing := ingressFixture(ns, "web", ptr.To(nginxClass), map[string]string{"app": "web"})
	ing.Annotations = maps.Clone(user)
	create(t, ing)
	create(t, policyFixture(ns, "orders", withSelector(map[string]string{"app": "web"})))

	testenv.Eventually(t, 10*time.Second, "wired", annotationsAre(ns, "web", merged(user, nginxWiring(ns, "orders", "X-Auth-Subject"))))
	testenv.Eventually(t, 10*time.Second, "Ready", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
	p := getPolicy(t, ns, "orders")
	if !controllerutil.ContainsFinalizer(p, Finalizer) {
		t.Errorf("finalizer %s missing: %v", Finalizer, p.Finalizers)
	}
	want := authv1alpha1.JWTPolicyStatus{
		ObservedGeneration: p.Generation,
		BoundIngresses:     1,
		Keys:               []authv1alpha1.IssuerKeys{{Issuer: idp.URL, Kids: []string{"rsa1", "ec1"}}},
	}
	if d := cmp.Diff(want, p.Status, cmpStatusIgnoringConditions); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}
	for _, c := range []struct {
		typ    string
		status metav1.ConditionStatus
		reason string
	}{
		{authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysLoaded},
		{authv1alpha1.ConditionIngressesWired, metav1.ConditionTrue, authv1alpha1.ReasonWired},
		{authv1alpha1.ConditionConflict, metav1.ConditionFalse, authv1alpha1.ReasonNoConflict},
	} {
		if err := conditionIs(ns, "orders", c.typ, c.status, c.reason)(); err != nil {
			t.Error(err)
		}
	}

	// Served: a good token is allowed with the claim header, none is denied.
	tok := idp.MustToken("RS256", idp.Claims("alice", time.Now()))
	h.waitDecision(t, ns, "orders", tok, true, "")
	d, _ := h.decide(ns, "orders", tok)
	if len(d.Headers) != 1 || d.Headers[0] != (policy.Header{Name: "X-Auth-Subject", Value: "alice"}) {
		t.Errorf("forwarded headers %v", d.Headers)
	}
	h.waitDecision(t, ns, "orders", "", false, policy.TokenMissing)

	// A spec change: new forwarded header, re-wired, observed.
	update(t, getPolicy(t, ns, "orders"), func(p *authv1alpha1.JWTPolicy) {
		p.Spec.ForwardClaims = append(p.Spec.ForwardClaims, authv1alpha1.ForwardClaim{Claim: "aud", Header: "X-Auth-Audience"})
	})
	testenv.Eventually(t, 10*time.Second, "re-wired", annotationsAre(ns, "web", merged(user, nginxWiring(ns, "orders", "X-Auth-Subject,X-Auth-Audience"))))
	testenv.Eventually(t, 10*time.Second, "observed", func() error {
		p := getPolicy(t, ns, "orders")
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", p.Status.ObservedGeneration, p.Generation)
		}
		return nil
	})

	// Someone edits the wiring away: it comes back.
	update(t, getIngress(t, ns, "web"), func(i *networkingv1.Ingress) {
		delete(i.Annotations, AnnotationNginxAuthURL)
		delete(i.Annotations, AnnotationPolicy)
	})
	testenv.Eventually(t, 10*time.Second, "re-wired after an edit", annotationsAre(ns, "web", merged(user, nginxWiring(ns, "orders", "X-Auth-Subject,X-Auth-Audience"))))

	// The selector stops matching: unwired, the user's annotation stays.
	update(t, getPolicy(t, ns, "orders"), func(p *authv1alpha1.JWTPolicy) {
		p.Spec.IngressSelector.MatchLabels = map[string]string{"app": "other"}
	})
	testenv.Eventually(t, 10*time.Second, "unwired", annotationsAre(ns, "web", user))
	testenv.Eventually(t, 10*time.Second, "NothingSelected", conditionIs(ns, "orders", authv1alpha1.ConditionIngressesWired, metav1.ConditionTrue, authv1alpha1.ReasonNothingSelected))
	if n := getPolicy(t, ns, "orders").Status.BoundIngresses; n != 0 {
		t.Errorf("boundIngresses %d after the selector stopped matching", n)
	}

	// The Ingress gets the label: wired again.
	update(t, getIngress(t, ns, "web"), func(i *networkingv1.Ingress) { i.Labels["app"] = "other" })
	testenv.Eventually(t, 10*time.Second, "wired by label", annotationsAre(ns, "web", merged(user, nginxWiring(ns, "orders", "X-Auth-Subject,X-Auth-Audience"))))

	// Deletion: the finalizer unwires first, then the policy is gone, and so is its snapshot entry.
	if err := env.Client.Delete(ctx, getPolicy(t, ns, "orders")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "unwired on delete", annotationsAre(ns, "web", user))
	testenv.Eventually(t, 10*time.Second, "policy gone", func() error {
		err := env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "orders"}, &authv1alpha1.JWTPolicy{})
		if client.IgnoreNotFound(err) != nil {
			return err
		}
		if err == nil {
			return fmt.Errorf("still there")
		}
		if h.store.Load().Get(ns, "orders") != nil {
			return fmt.Errorf("still served")
		}
		return nil
	})
}

var cmpStatusIgnoringConditions = cmp.FilterPath(func(p cmp.Path) bool {
	return p.Last().String() == ".Conditions"
}, cmp.Ignore())
