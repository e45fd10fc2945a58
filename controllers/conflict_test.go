package controllers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/testenv"
)

// ingressWatch records every version of one Ingress the API server sends and remembers the
// first that was not wired to any policy.
type ingressWatch struct {
	mu       sync.Mutex
	versions int
	unwired  []string
	owners   []string
	stop     func()
	done     chan struct{}
}

func watchIngress(t *testing.T, ns, name string) *ingressWatch {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := wc.Watch(ctx, &networkingv1.IngressList{}, client.InNamespace(ns), client.MatchingFields{"metadata.name": name})
	if err != nil {
		t.Fatal(err)
	}
	iw := &ingressWatch{done: make(chan struct{})}
	iw.stop = func() {
		cancel()
		w.Stop()
		<-iw.done
	}
	go func() {
		defer close(iw.done)
		for ev := range w.ResultChan() {
			ing, ok := ev.Object.(*networkingv1.Ingress)
			if !ok || ev.Type == watch.Bookmark {
				continue
			}
			iw.mu.Lock()
			iw.versions++
			owner := ing.Annotations[AnnotationPolicy]
			if ing.Annotations[AnnotationNginxAuthURL] == "" || owner == "" || !strings.HasSuffix(ing.Annotations[AnnotationNginxAuthURL], "/"+owner) {
				iw.unwired = append(iw.unwired, fmt.Sprintf("%s %s: %v", ev.Type, ing.ResourceVersion, ing.Annotations))
			}
			if len(iw.owners) == 0 || iw.owners[len(iw.owners)-1] != owner {
				iw.owners = append(iw.owners, owner)
			}
			iw.mu.Unlock()
		}
	}()
	return iw
}

func (iw *ingressWatch) check(t *testing.T) {
	t.Helper()
	iw.stop()
	iw.mu.Lock()
	defer iw.mu.Unlock()
	if len(iw.unwired) > 0 {
		t.Errorf("the Ingress was seen unwired (or half wired) during handover:\n%s", strings.Join(iw.unwired, "\n"))
	}
	t.Logf("watched %d versions of the Ingress; owners in order: %v", iw.versions, iw.owners)
}

// TestConflictAndHandover: the oldest policy owns a shared Ingress (age before name), the
// other reports Conflict naming it; when the owner stops selecting the Ingress, and when the
// next owner is deleted, the Ingress passes straight to the next policy and is never seen
// unwired.
func TestConflictAndHandover(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	startManager(t, ns, harnessOptions{})
	create(t, ingressFixture(ns, "web", ptr.To(nginxClass), map[string]string{"app": "web"}))

	// "z-old" is older than "a-new": age wins over name.
	create(t, policyFixture(ns, "z-old", withSelector(map[string]string{"app": "web"})))
	testenv.Eventually(t, 10*time.Second, "wired to z-old", annotationsAre(ns, "web", nginxWiring(ns, "z-old", "X-Auth-Subject")))
	time.Sleep(1100 * time.Millisecond) // creationTimestamp has one-second resolution
	create(t, policyFixture(ns, "a-new"))
	testenv.Eventually(t, 10*time.Second, "Conflict", conditionIs(ns, "a-new", authv1alpha1.ConditionConflict, metav1.ConditionTrue, authv1alpha1.ReasonConflictingPolicy))
	testenv.Eventually(t, 5*time.Second, "loser not Ready", conditionIs(ns, "a-new", authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonNotReady))
	loser := getPolicy(t, ns, "a-new")
	if msg := getCondition(loser.Status.Conditions, authv1alpha1.ConditionConflict).Message; !strings.Contains(msg, "web (JWTPolicy z-old)") {
		t.Errorf("Conflict message does not name the Ingress and the winner: %q", msg)
	}
	if loser.Status.BoundIngresses != 0 {
		t.Errorf("the loser counts %d Ingresses", loser.Status.BoundIngresses)
	}
	if err := conditionIs(ns, "z-old", authv1alpha1.ConditionConflict, metav1.ConditionFalse, authv1alpha1.ReasonNoConflict)(); err != nil {
		t.Error(err)
	}
	if err := annotationsAre(ns, "web", nginxWiring(ns, "z-old", "X-Auth-Subject"))(); err != nil {
		t.Error(err)
	}

	// The owner stops selecting the Ingress: handed to a-new without an unwired moment.
	iw := watchIngress(t, ns, "web")
	update(t, getPolicy(t, ns, "z-old"), func(p *authv1alpha1.JWTPolicy) {
		p.Spec.IngressSelector.MatchLabels = map[string]string{"app": "none"}
	})
	testenv.Eventually(t, 10*time.Second, "handed to a-new", annotationsAre(ns, "web", nginxWiring(ns, "a-new", "X-Auth-Subject")))
	testenv.Eventually(t, 10*time.Second, "no conflict left", conditionIs(ns, "a-new", authv1alpha1.ConditionConflict, metav1.ConditionFalse, authv1alpha1.ReasonNoConflict))
	testenv.Eventually(t, 5*time.Second, "a-new Ready", conditionIs(ns, "a-new", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))

	// A third policy queues behind a-new; deleting a-new hands the Ingress to it.
	time.Sleep(1100 * time.Millisecond)
	create(t, policyFixture(ns, "third"))
	testenv.Eventually(t, 10*time.Second, "third in conflict", conditionIs(ns, "third", authv1alpha1.ConditionConflict, metav1.ConditionTrue, authv1alpha1.ReasonConflictingPolicy))
	if err := env.Client.Delete(context.Background(), getPolicy(t, ns, "a-new")); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "handed to third", annotationsAre(ns, "web", nginxWiring(ns, "third", "X-Auth-Subject")))
	testenv.Eventually(t, 10*time.Second, "third owns it", func() error {
		p := getPolicy(t, ns, "third")
		if p.Status.BoundIngresses != 1 {
			return fmt.Errorf("boundIngresses %d", p.Status.BoundIngresses)
		}
		return conditionIs(ns, "third", authv1alpha1.ConditionConflict, metav1.ConditionFalse, authv1alpha1.ReasonNoConflict)()
	})
	iw.check(t)
}
