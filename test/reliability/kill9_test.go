package reliability

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/controllers"
	"github.com/claimguard/claimguard/internal/testenv"
)

// wiringIngresses is how many Ingresses the kill -9 scenarios wire.
const wiringIngresses = 200

// ingressWatch records every version of the Ingresses of one namespace that the API server
// reports, and flags any Ingress seen unwired after it had been seen wired (and, when
// wiredAtCreation is set, any version unwired at all).
type ingressWatch struct {
	ns, policy      string
	wiredAtCreation bool

	mu         sync.Mutex
	wired      map[string]bool
	versions   int
	violations []string
	relists    int
}

// isWired: the Ingress carries the policy's wiring (owner annotation and ingress-nginx auth-url
// to the policy's endpoint).
func (w *ingressWatch) isWired(ing *networkingv1.Ingress) bool {
	return ing.Annotations[controllers.AnnotationPolicy] == w.policy &&
		strings.HasSuffix(ing.Annotations[controllers.AnnotationNginxAuthURL], "/authz/"+w.ns+"/"+w.policy)
}

func (w *ingressWatch) see(ing *networkingv1.Ingress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.versions++
	wired := w.isWired(ing)
	switch {
	case wired:
		w.wired[ing.Name] = true
	case w.wired[ing.Name]:
		w.violations = append(w.violations, fmt.Sprintf("%s unwired at resourceVersion %s after it had been wired", ing.Name, ing.ResourceVersion))
	case w.wiredAtCreation:
		w.violations = append(w.violations, fmt.Sprintf("%s exists unwired at resourceVersion %s", ing.Name, ing.ResourceVersion))
	}
}

func (w *ingressWatch) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.wired)
}

// watchIngresses lists and watches the namespace's Ingresses until the test ends, resuming
// from the last resourceVersion when the API server closes the watch (and listing again when
// that version is too old).
func watchIngresses(t *testing.T, c client.WithWatch, w *ingressWatch) {
	t.Helper()
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	relist := func() (string, error) {
		var list networkingv1.IngressList
		if err := c.List(wctx, &list, client.InNamespace(w.ns)); err != nil {
			return "", err
		}
		for i := range list.Items {
			w.see(&list.Items[i])
		}
		return list.ResourceVersion, nil
	}
	rv, err := relist()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(done)
		for wctx.Err() == nil {
			wt, err := c.Watch(wctx, &networkingv1.IngressList{}, client.InNamespace(w.ns), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			gone := false
			for ev := range wt.ResultChan() {
				if ev.Type == watch.Error {
					gone = true
					break
				}
				ing, ok := ev.Object.(*networkingv1.Ingress)
				if !ok {
					continue
				}
				rv = ing.ResourceVersion
				if ev.Type == watch.Added || ev.Type == watch.Modified {
					w.see(ing)
				}
			}
			wt.Stop()
			if gone && wctx.Err() == nil {
				w.mu.Lock()
				w.relists++
				w.mu.Unlock()
				if r, err := relist(); err == nil {
					rv = r
				}
			}
		}
	}()
}

func newIngress(ns, name string) *networkingv1.Ingress {
	return &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": "guarded"}},
		Spec: networkingv1.IngressSpec{
			IngressClassName: ptr.To("nginx"),
			DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
				Name: name, Port: networkingv1.ServiceBackendPort{Number: 80},
			}},
		},
	}
}

// createIngresses creates Ingresses ing-000... on workers goroutines, retrying each create
// until it succeeds (an admission webhook that is down refuses it), and counts the creates
// that succeeded in created.
func createIngresses(ctx context.Context, c client.Client, ns string, n, workers int, created *atomic.Int64) error {
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				for {
					err := c.Create(ctx, newIngress(ns, fmt.Sprintf("ing-%03d", i)))
					if err == nil || apierrors.IsAlreadyExists(err) {
						created.Add(1)
						break
					}
					if ctx.Err() != nil {
						errs <- err
						return
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func guardPolicy(ns string) string {
	return policyDoc(ns, "guard", inlineKeys(), "  ingressSelector:\n    matchLabels: {app: guarded}\n")
}

// TestKillManagerDuringWiring: a policy selects 200 Ingresses; the manager (throttled to 20
// API requests/s, so the wiring takes about ten seconds) is killed with SIGKILL in the middle.
// A new manager wires the rest, every Ingress version the API server ever reports is watched,
// and none was unwired once wired (the controller's applies add the wiring and never take it
// away on the way).
func TestKillManagerDuringWiring(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	ns := "wire"
	createNamespace(t, env.Client, ns)
	if err := env.Client.Create(ctx(), &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"},
		Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}); err != nil {
		t.Fatal(err)
	}
	var created atomic.Int64
	if err := createIngresses(ctx(), env.Client, ns, wiringIngresses, 8, &created); err != nil {
		t.Fatal(err)
	}
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	w := &ingressWatch{ns: ns, policy: "guard", wired: map[string]bool{}}
	watchIngresses(t, wc, w)

	m1 := startManager(t, "manager-1", env.Kubeconfig, "--leader-elect=false", "--kube-api-qps", "20", "--kube-api-burst", "20")
	m1.waitReady(t, 60*time.Second)
	createPolicy(t, env.Client, guardPolicy(ns))
	waitFor(t, 60*time.Second, "wiring under way", func() error {
		if n := w.count(); n < 30 {
			return fmt.Errorf("%d wired", n)
		}
		return nil
	})
	m1.kill9(t)
	atKill := w.count()
	if atKill >= wiringIngresses {
		t.Fatalf("all %d Ingresses were wired before the kill: the scenario did not happen", atKill)
	}

	m2 := startManager(t, "manager-2", env.Kubeconfig, "--leader-elect=false")
	restarted := time.Now()
	waitFor(t, 90*time.Second, "every Ingress wired and the policy Ready", func() error {
		if n := w.count(); n < wiringIngresses {
			return fmt.Errorf("%d/%d wired", n, wiringIngresses)
		}
		p, err := getPolicy(env.Client, ns, "guard")
		if err != nil {
			return err
		}
		if p.Status.BoundIngresses != wiringIngresses {
			return fmt.Errorf("boundIngresses %d", p.Status.BoundIngresses)
		}
		return conditionIs(env.Client, ns, "guard", authv1alpha1.ConditionReady, metav1.ConditionTrue, "")
	})
	converged := time.Since(restarted)
	time.Sleep(time.Second) // any late write would show now
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		t.Error(v)
	}
	t.Logf("kill -9 after %d/%d Ingresses were wired; the new manager converged %s after its start; %d Ingress versions watched (%d relists), %d unwired after wiring",
		atKill, wiringIngresses, converged.Round(100*time.Millisecond), w.versions, w.relists, len(w.violations))
	_ = m2
}

// TestKillManagerDuringAdmission runs the same with the admission webhooks on: the policy
// exists first, 200 Ingresses are created while the manager is killed with SIGKILL and
// restarted. Every Ingress is wired from its very first version: while the webhooks are down
// the API server refuses the creates (failurePolicy Fail), and the creator retries.
func TestKillManagerDuringAdmission(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	ns := "admit"
	createNamespace(t, env.Client, ns)
	if err := env.Client.Create(ctx(), &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"},
		Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}); err != nil {
		t.Fatal(err)
	}
	webhooks := testenv.FreeAddr(t)
	installWebhooks(t, env.Client, webhooks)
	flags := []string{"--leader-elect=false", "--webhook-bind-address", webhooks,
		"--webhook-service-namespace", ns, "--webhook-cert-extra-sans", "127.0.0.1,localhost"}
	m1 := startManager(t, "manager-1", env.Kubeconfig, flags...)
	m1.waitReady(t, 60*time.Second)
	createPolicy(t, env.Client, guardPolicy(ns))
	// The Ingress webhooks apply to namespaces the leader labels as guarded.
	waitFor(t, 30*time.Second, "namespace labelled guarded", func() error {
		nsObj := &corev1.Namespace{}
		if err := env.Client.Get(ctx(), client.ObjectKey{Name: ns}, nsObj); err != nil {
			return err
		}
		if nsObj.Labels["auth.claimguard.dev/guarded"] != "true" {
			return fmt.Errorf("labels %v", nsObj.Labels)
		}
		return nil
	})
	// The API server matches webhooks against the namespace labels of its own informer, a
	// moment behind: wait until a dry-run create comes back wired.
	w := &ingressWatch{ns: ns, policy: "guard", wired: map[string]bool{}, wiredAtCreation: true}
	waitFor(t, 30*time.Second, "the mutating webhook wiring new Ingresses", func() error {
		probe := newIngress(ns, "probe")
		if err := env.Client.Create(ctx(), probe, client.DryRunAll); err != nil {
			return err
		}
		if !w.isWired(probe) {
			return fmt.Errorf("a dry-run create came back unwired: %v", probe.Annotations)
		}
		return nil
	})

	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	watchIngresses(t, wc, w)

	var created atomic.Int64
	cctx, cancel := context.WithTimeout(ctx(), 3*time.Minute)
	defer cancel()
	createErr := make(chan error, 1)
	go func() { createErr <- createIngresses(cctx, env.Client, ns, wiringIngresses, 4, &created) }()
	waitFor(t, 60*time.Second, "creates under way", func() error {
		if n := created.Load(); n < 40 {
			return fmt.Errorf("%d created", n)
		}
		return nil
	})
	m1.kill9(t)
	atKill := created.Load()
	time.Sleep(2 * time.Second) // creates are refused meanwhile
	m2 := startManager(t, "manager-2", env.Kubeconfig, flags...)
	if err := <-createErr; err != nil {
		t.Fatalf("creating Ingresses: %v", err)
	}
	waitFor(t, 60*time.Second, "every Ingress wired", func() error {
		if n := w.count(); n < wiringIngresses {
			return fmt.Errorf("%d/%d wired", n, wiringIngresses)
		}
		return nil
	})
	time.Sleep(time.Second)
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, v := range w.violations {
		t.Error(v)
	}
	t.Logf("kill -9 after %d/%d creates; %d Ingress versions watched (%d relists), %d unwired", atKill, wiringIngresses, w.versions, w.relists, len(w.violations))
	_ = m2
}

// installWebhooks installs config/webhook, every clientConfig pointed at https://addr<path>.
func installWebhooks(t *testing.T, c client.Client, addr string) {
	t.Helper()
	objs, err := testenv.WebhookConfigs(addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		if err := c.Create(ctx(), obj); err != nil {
			t.Fatal(err)
		}
	}
}
