package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/internal/wiring"
)

// policyWrites counts the versions of one JWTPolicy the API server reports.
type policyWrites struct {
	mu       sync.Mutex
	versions []string
	stop     func()
}

func watchPolicyWrites(t *testing.T, ns, name string) *policyWrites {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := wc.Watch(ctx, &authv1alpha1.JWTPolicyList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": name})
	if err != nil {
		t.Fatal(err)
	}
	pw := &policyWrites{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*authv1alpha1.JWTPolicy); ok && ev.Type != watch.Bookmark {
				pw.mu.Lock()
				pw.versions = append(pw.versions, fmt.Sprintf("%s rv=%s gen=%d", ev.Type, p.ResourceVersion, p.Generation))
				pw.mu.Unlock()
			}
		}
	}()
	pw.stop = func() { cancel(); w.Stop(); <-done }
	t.Cleanup(pw.stop)
	return pw
}

func (pw *policyWrites) count() int {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return len(pw.versions)
}

func (pw *policyWrites) String() string {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	return strings.Join(pw.versions, "\n")
}

// TestOneStatusWritePerPass counts resourceVersions: creating a policy costs exactly the
// create, the finalizer patch and one status write; passes that change nothing write nothing;
// a spec change costs the update and one status write.
func TestOneStatusWritePerPass(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	h := startManager(t, ns, harnessOptions{})
	ctx := context.Background()
	create(t, ingressFixture(ns, "web", ptr.To(nginxClass), map[string]string{"app": "web"}))
	create(t, ingressFixture(ns, "bystander", ptr.To(otherClass), map[string]string{"app": "bystander"}))
	// The pass must see both Ingresses, or it would rightly write twice.
	testenv.Eventually(t, 5*time.Second, "cache has the Ingresses", func() error {
		var l networkingv1.IngressList
		if err := h.mgr.GetCache().List(ctx, &l, client.InNamespace(ns)); err != nil {
			return err
		}
		if len(l.Items) != 2 {
			return fmt.Errorf("%d Ingresses cached", len(l.Items))
		}
		return nil
	})

	pw := watchPolicyWrites(t, ns, "orders")
	create(t, policyFixture(ns, "orders", withSelector(map[string]string{"app": "web"})))
	testenv.Eventually(t, 10*time.Second, "Ready", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
	testenv.Eventually(t, 10*time.Second, "wired", annotationsAre(ns, "web", nginxWiring(ns, "orders", "X-Auth-Subject")))
	time.Sleep(time.Second) // let the passes the wiring itself triggers run
	if n := pw.count(); n != 3 {
		t.Fatalf("creation produced %d versions, want 3 (create, finalizer, status):\n%s", n, pw)
	}

	// Passes with nothing to do: direct calls, an unrelated Ingress edit, key events.
	req := ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "orders"}}
	for range 3 {
		if _, err := h.rec.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	update(t, getIngress(t, ns, "bystander"), func(i *networkingv1.Ingress) { i.Labels["touched"] = "yes" })
	h.rec.queue.Add(req.NamespacedName)
	time.Sleep(time.Second)
	if n := pw.count(); n != 3 {
		t.Fatalf("idle passes wrote:\n%s", pw)
	}

	// A spec change that does not touch the wiring: the update plus one status write.
	update(t, getPolicy(t, ns, "orders"), func(p *authv1alpha1.JWTPolicy) {
		p.Spec.RequiredClaims = []authv1alpha1.RequiredClaim{{Claim: "sub", Operator: authv1alpha1.OpExists}}
	})
	testenv.Eventually(t, 10*time.Second, "observed", func() error {
		p := getPolicy(t, ns, "orders")
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("observedGeneration %d of %d", p.Status.ObservedGeneration, p.Generation)
		}
		return nil
	})
	time.Sleep(time.Second)
	if n := pw.count(); n != 5 {
		t.Fatalf("a spec change produced %d versions, want 2 (update, status):\n%s", n-3, pw)
	}
}

// TestManagerRestart stops the manager, changes the world while it is down (a policy deleted,
// two created) and checks that a new manager converges.
func TestManagerRestart(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	ctx := context.Background()
	m1 := startManager(t, ns, harnessOptions{})
	create(t, ingressFixture(ns, "web-a", ptr.To(nginxClass), map[string]string{"app": "a"}))
	create(t, ingressFixture(ns, "web-b", ptr.To(nginxClass), map[string]string{"app": "b"}))
	create(t, policyFixture(ns, "first", withSelector(map[string]string{"app": "a"})))
	testenv.Eventually(t, 10*time.Second, "wired", annotationsAre(ns, "web-a", nginxWiring(ns, "first", "X-Auth-Subject")))
	testenv.Eventually(t, 10*time.Second, "Ready", conditionIs(ns, "first", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
	m1.stop()

	if err := env.Client.Delete(ctx, getPolicy(t, ns, "first")); err != nil {
		t.Fatal(err)
	}
	create(t, policyFixture(ns, "second", withSelector(map[string]string{"app": "a"})))
	create(t, policyFixture(ns, "third", withSelector(map[string]string{"app": "b"})))
	time.Sleep(200 * time.Millisecond)
	if err := annotationsAre(ns, "web-a", nginxWiring(ns, "first", "X-Auth-Subject"))(); err != nil {
		t.Fatalf("changed while no manager ran: %v", err)
	}

	m2 := startManager(t, ns, harnessOptions{})
	testenv.Eventually(t, 10*time.Second, "handed over", annotationsAre(ns, "web-a", nginxWiring(ns, "second", "X-Auth-Subject")))
	testenv.Eventually(t, 10*time.Second, "wired", annotationsAre(ns, "web-b", nginxWiring(ns, "third", "X-Auth-Subject")))
	testenv.Eventually(t, 10*time.Second, "first gone", func() error {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "first"}, &authv1alpha1.JWTPolicy{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
	for _, name := range []string{"second", "third"} {
		testenv.Eventually(t, 10*time.Second, name+" Ready", conditionIs(ns, name, authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
		if m2.store.Load().Get(ns, name) == nil {
			t.Errorf("%s not served", name)
		}
	}
}

func electedWithin(h *harness, d time.Duration) bool {
	select {
	case <-h.elected:
		return true
	case <-time.After(d):
		return false
	}
}

// statusWriters returns the field managers (client user agents) that wrote the status.
func statusWriters(p *authv1alpha1.JWTPolicy) []string {
	var out []string
	for _, mf := range p.ManagedFields {
		if mf.Subresource == "status" && !slices.Contains(out, mf.Manager) {
			out = append(out, mf.Manager)
		}
	}
	slices.Sort(out)
	return out
}

// TestTwoManagers: two managers with leader election against one API server. Both serve the
// policy from their own store; only the leader writes; when it stops, the other takes over.
func TestTwoManagers(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	one := startManager(t, ns, harnessOptions{leaderElectionID: "claimguard-two", userAgent: "manager-one"})
	two := startManager(t, ns, harnessOptions{leaderElectionID: "claimguard-two", userAgent: "manager-two"})
	var leader, follower *harness
	var leaderUA, followerUA string
	deadline := time.Now().Add(20 * time.Second)
	for leader == nil {
		switch {
		case electedWithin(one, 50*time.Millisecond):
			leader, follower, leaderUA, followerUA = one, two, "manager-one", "manager-two"
		case electedWithin(two, 50*time.Millisecond):
			leader, follower, leaderUA, followerUA = two, one, "manager-two", "manager-one"
		case time.Now().After(deadline):
			t.Fatal("no leader elected")
		}
	}
	if electedWithin(follower, 0) {
		t.Fatal("both managers are leaders")
	}

	create(t, ingressFixture(ns, "web", ptr.To(nginxClass), nil))
	create(t, policyFixture(ns, "orders"))
	testenv.Eventually(t, 10*time.Second, "Ready", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
	testenv.Eventually(t, 10*time.Second, "wired", annotationsAre(ns, "web", nginxWiring(ns, "orders", "X-Auth-Subject")))
	tok := idp.MustToken("RS256", idp.Claims("alice", time.Now()))
	for _, h := range []*harness{leader, follower} {
		h.waitDecision(t, ns, "orders", tok, true, "")
	}
	if got := statusWriters(getPolicy(t, ns, "orders")); !slices.Equal(got, []string{leaderUA}) {
		t.Errorf("status written by %v, want only the leader %s", got, leaderUA)
	}

	// The leader goes; the follower takes over and reconciles the next change.
	leader.stop()
	if !electedWithin(follower, 20*time.Second) {
		t.Fatal("the follower did not take over")
	}
	update(t, getPolicy(t, ns, "orders"), func(p *authv1alpha1.JWTPolicy) {
		p.Spec.ForwardClaims = append(p.Spec.ForwardClaims, authv1alpha1.ForwardClaim{Claim: "aud", Header: "X-Auth-Audience"})
	})
	testenv.Eventually(t, 15*time.Second, "re-wired by the new leader", annotationsAre(ns, "web", nginxWiring(ns, "orders", "X-Auth-Subject,X-Auth-Audience")))
	testenv.Eventually(t, 10*time.Second, "observed by the new leader", func() error {
		p := getPolicy(t, ns, "orders")
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("observedGeneration %d of %d", p.Status.ObservedGeneration, p.Generation)
		}
		if !slices.Contains(statusWriters(p), followerUA) {
			return fmt.Errorf("status writers %v", statusWriters(p))
		}
		return nil
	})
}

// TestIngressClassResolution: no ingressClassName takes the default IngressClass, and the
// legacy kubernetes.io/ingress.class annotation is honoured.
func TestIngressClassResolution(t *testing.T) {
	t.Parallel()
	installTraefikCRD(t)
	ns := newNamespace(t)
	ctx := context.Background()
	def := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "cg-default-" + ns, Annotations: map[string]string{wiring.AnnotationDefaultIngressClass: "true"}},
		Spec:       networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"},
	}
	create(t, def)
	t.Cleanup(func() { _ = env.Client.Delete(ctx, def) })
	startManager(t, ns, harnessOptions{})
	legacy := ingressFixture(ns, "legacy", nil, nil)
	legacy.Annotations = map[string]string{wiring.AnnotationLegacyIngressClass: "traefik"}
	create(t, legacy)
	create(t, ingressFixture(ns, "defaulted", nil, nil))
	create(t, policyFixture(ns, "orders"))
	testenv.Eventually(t, 10*time.Second, "default class: nginx", annotationsAre(ns, "defaulted", nginxWiring(ns, "orders", "X-Auth-Subject")))
	testenv.Eventually(t, 10*time.Second, "legacy annotation: traefik", annotationsAre(ns, "legacy",
		merged(traefikWiring(ns, "orders", ""), map[string]string{wiring.AnnotationLegacyIngressClass: "traefik"})))
	testenv.Eventually(t, 10*time.Second, "two bound", func() error {
		if n := getPolicy(t, ns, "orders").Status.BoundIngresses; n != 2 {
			return fmt.Errorf("boundIngresses %d", n)
		}
		return nil
	})
	// One Wired Event per pass names the Ingresses it wired.
	testenv.Eventually(t, 10*time.Second, "Wired events", func() error {
		var evs corev1.EventList // the core/v1 view of events.k8s.io Events
		if err := env.Client.List(ctx, &evs, client.InNamespace(ns)); err != nil {
			return err
		}
		named := map[string]bool{}
		for _, e := range evs.Items {
			if e.Reason == "Wired" && e.InvolvedObject.Name == "orders" && e.Type == corev1.EventTypeNormal {
				for _, n := range []string{"defaulted", "legacy"} {
					named[n] = named[n] || strings.Contains(e.Message, n)
				}
			}
		}
		if !named["defaulted"] || !named["legacy"] {
			return fmt.Errorf("Wired events name %v", named)
		}
		return nil
	})
}

// TestBuilderRecompilesOnlyWhatChanged: a spec change recompiles that policy only; status
// writes and unrelated events recompile nothing (the served *policy.Policy stays the same).
func TestBuilderRecompilesOnlyWhatChanged(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	h := startManager(t, ns, harnessOptions{})
	create(t, policyFixture(ns, "one"))
	create(t, policyFixture(ns, "two"))
	for _, n := range []string{"one", "two"} {
		testenv.Eventually(t, 10*time.Second, n+" Ready", conditionIs(ns, n, authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
	}
	snap := h.store.Load()
	one, two := snap.Get(ns, "one"), snap.Get(ns, "two")
	if one == nil || two == nil {
		t.Fatal("not served")
	}
	published := h.builder.Publishes()

	update(t, getPolicy(t, ns, "one"), func(p *authv1alpha1.JWTPolicy) { p.Spec.PublicPaths = []string{"/healthz"} })
	testenv.Eventually(t, 10*time.Second, "one recompiled", func() error {
		if h.store.Load().Get(ns, "one") == one {
			return fmt.Errorf("old compile still served")
		}
		return nil
	})
	testenv.Eventually(t, 10*time.Second, "status observed", func() error {
		p := getPolicy(t, ns, "one")
		if p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("observedGeneration %d of %d", p.Status.ObservedGeneration, p.Generation)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	if h.store.Load().Get(ns, "two") != two {
		t.Error("two was recompiled although nothing about it changed")
	}
	if n := h.builder.Publishes() - published; n != 1 {
		t.Errorf("%d snapshots published for one change, want 1", n)
	}
	// The new compile allows the public path without a token: it is the one served.
	d, err := h.decide(ns, "one", "")
	if err != nil || d.Allowed {
		t.Fatalf("a request without a token to /orders: %+v %v", d, err)
	}
	pub := h.store.Load().Get(ns, "one").Decide(&policy.Request{Path: "/healthz"})
	if !pub.Allowed || !pub.Public {
		t.Errorf("public path not public: %+v", pub)
	}
}
