package controllers

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/internal/wiring"
)

// guardedLabelIs waits until the namespace's guarded label is present (want) or absent.
func guardedLabelIs(ns string, want bool) func() error {
	return func() error {
		n := &corev1.Namespace{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: ns}, n); err != nil {
			return err
		}
		v, ok := n.Labels[wiring.LabelGuarded]
		if want && v != "true" || !want && ok {
			return fmt.Errorf("labels %v, want guarded=%v", n.Labels, want)
		}
		return nil
	}
}

// TestGuardedLabel follows the guarded label of a namespace: set with the first policy, put
// back when removed by hand, kept while a policy is still being deleted, removed with the last.
func TestGuardedLabel(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	startManager(t, ns, harnessOptions{})
	ctx := context.Background()

	if err := guardedLabelIs(ns, false)(); err != nil {
		t.Fatalf("a namespace without policies: %v", err)
	}
	create(t, policyFixture(ns, "a"))
	create(t, policyFixture(ns, "b"))
	testenv.Eventually(t, 10*time.Second, "labelled", guardedLabelIs(ns, true))

	update(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, func(n *corev1.Namespace) {
		delete(n.Labels, wiring.LabelGuarded)
	})
	testenv.Eventually(t, 10*time.Second, "label put back", guardedLabelIs(ns, true))

	if err := env.Client.Delete(ctx, getPolicy(t, ns, "a")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "policy a gone", func() error {
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "a"}, &authv1alpha1.JWTPolicy{})
		if err == nil {
			return fmt.Errorf("still there")
		}
		return client.IgnoreNotFound(err)
	})
	if err := guardedLabelIs(ns, true)(); err != nil {
		t.Fatalf("policy b is left: %v", err)
	}
	// A second finalizer holds b in deletion: its Ingresses may still be wired, so the
	// namespace stays guarded until b is really gone.
	const hold = "example.com/hold"
	update(t, getPolicy(t, ns, "b"), func(p *authv1alpha1.JWTPolicy) { p.Finalizers = append(p.Finalizers, hold) })
	if err := env.Client.Delete(ctx, getPolicy(t, ns, "b")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "claimguard's finalizer removed", func() error {
		if p := getPolicy(t, ns, "b"); len(p.Finalizers) != 1 {
			return fmt.Errorf("finalizers %v", p.Finalizers)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond) // a wrong removal would come within milliseconds
	if err := guardedLabelIs(ns, true)(); err != nil {
		t.Fatalf("policy b is being deleted: %v", err)
	}
	update(t, getPolicy(t, ns, "b"), func(p *authv1alpha1.JWTPolicy) { p.Finalizers = nil })
	testenv.Eventually(t, 10*time.Second, "label removed with the last policy", guardedLabelIs(ns, false))
}
