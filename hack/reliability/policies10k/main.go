// Command policies10k is the cluster half of the reliability suite's 10,000-policies scenario:
// it starts a real API server (envtest), runs `claimguard manager` as a process and
//
//  1. applies 10,000 JWTPolicies (100 namespaces, inline RSA and EC keys, a required claim,
//     two forwarded claims) and records how long until the manager serves all of them and
//     until every one has a Ready status written, and the manager's peak memory (VmHWM);
//  2. restarts the manager with the 10,000 policies in place and records how long until it is
//     ready and serves all of them (the load time after a rollout or a crash) and its VmHWM;
//  3. checks that the first and the last policy answer a valid token 200 and a forged one 401.
//
// It exits 0 and prints PASS when every policy is served and Ready, the restart load stays
// under -max-load and both peaks under -max-hwm; otherwise FAIL and exit 1.
//
//	go run ./hack/reliability/policies10k                  # 10,000 policies
//	go run ./hack/reliability/policies10k -policies 2000   # a quicker look
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

type options struct {
	policies, namespaces int
	binary               string
	maxLoad, timeout     time.Duration
	maxHWMMiB            int
}

func main() {
	var o options
	flag.IntVar(&o.policies, "policies", 10000, "JWTPolicies to apply")
	flag.IntVar(&o.namespaces, "namespaces", 100, "namespaces they are spread over")
	flag.StringVar(&o.binary, "binary", "", "claimguard binary; empty: go build one")
	flag.DurationVar(&o.maxLoad, "max-load", time.Minute, "PASS bound on the restarted manager's time to serve every policy")
	flag.IntVar(&o.maxHWMMiB, "max-hwm", 1024, "PASS bound on the manager's peak memory (VmHWM), in MiB")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up on a phase after this long")
	flag.Parse()
	failures, err := run(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "policies10k:", err)
		os.Exit(1)
	}
	if len(failures) > 0 {
		for _, f := range failures {
			fmt.Println("FAIL:", f)
		}
		os.Exit(1)
	}
	fmt.Println("PASS")
}

// manager is a running claimguard manager process.
type manager struct {
	cmd           *exec.Cmd
	auth, probes  string
	log           string
	done          chan struct{}
	started       time.Time
	readyAt       time.Time
	servedAllAt   time.Time
	hwmKiB, rssKB int
}

func startManager(bin, kubeconfig, logPath string) (*manager, error) {
	m := &manager{log: logPath, done: make(chan struct{})}
	var err error
	if m.auth, err = testenv.LoopbackAddr(); err != nil {
		return nil, err
	}
	if m.probes, err = testenv.LoopbackAddr(); err != nil {
		return nil, err
	}
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(bin, "manager", "--kubeconfig", kubeconfig, "--leader-elect=false",
		"--metrics-bind-address", "0", "--health-probe-bind-address", m.probes, "--auth-bind-address", m.auth,
		"--webhook-bind-address", "0", "--shutdown-delay", "0s")
	m.cmd.Stdout, m.cmd.Stderr = f, f
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	m.started = time.Now()
	if err := m.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = m.cmd.Wait(); f.Close(); close(m.done) }()
	return m, nil
}

func (m *manager) stop() {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// waitServing polls readiness and the snapshot gauge until the manager serves want policies.
func (m *manager) waitServing(want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-m.done:
			return fmt.Errorf("the manager exited (log %s)", m.log)
		default:
		}
		if m.readyAt.IsZero() && status("http://"+m.probes+"/readyz") == http.StatusOK {
			m.readyAt = time.Now()
		}
		if n, ok := gauge("http://"+m.auth+"/metrics", `claimguard_snapshot_policies{state="compiled"}`); ok && int(n) >= want {
			m.servedAllAt = time.Now()
			if m.readyAt.IsZero() {
				m.readyAt = m.servedAllAt
			}
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not serving %d policies within %s (log %s)", want, timeout, m.log)
}

func (m *manager) memory() {
	m.hwmKiB, _ = testenv.ProcStatusKiB(m.cmd.Process.Pid, "VmHWM")
	m.rssKB, _ = testenv.ProcStatusKiB(m.cmd.Process.Pid, "VmRSS")
}

func run(o options) ([]string, error) {
	ctx := context.Background()
	work, err := os.MkdirTemp("", "claimguard-policies10k-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	bin := o.binary
	if bin == "" {
		if bin, err = testenv.BuildClaimguard(work); err != nil {
			return nil, err
		}
	}
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		return nil, err
	}
	defer env.Stop()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		return nil, err
	}
	iss, err := authztest.NewIssuer("https://idp.example.com/realms/shop")
	if err != nil {
		return nil, err
	}
	forger, err := authztest.NewIssuer(iss.URL)
	if err != nil {
		return nil, err
	}
	for n := range o.namespaces {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsName(n)}}); err != nil {
			return nil, err
		}
	}
	ready := &readyCount{ready: map[string]bool{}}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	if err := ready.watch(wctx, c); err != nil {
		return nil, err
	}
	logs := filepath.Join(os.TempDir(), fmt.Sprintf("claimguard-policies10k-%d", os.Getpid()))
	fmt.Printf("policies10k: %d JWTPolicies in %d namespaces; manager logs in %s-*.log\n", o.policies, o.namespaces, logs)

	// Phase 1: apply with the manager running.
	m1, err := startManager(bin, env.Kubeconfig, logs+"-1.log")
	if err != nil {
		return nil, err
	}
	if err := m1.waitServing(0, 2*time.Minute); err != nil {
		m1.stop()
		return nil, err
	}
	jwks := iss.PublicJWKS()
	applyStart := time.Now()
	if err := parallel(16, o.policies, func(i int) error { return c.Create(ctx, newPolicy(o, i, iss.URL, jwks)) }); err != nil {
		m1.stop()
		return nil, err
	}
	applied := time.Since(applyStart)
	if err := m1.waitServing(o.policies, o.timeout); err != nil {
		m1.stop()
		return nil, err
	}
	served := m1.servedAllAt.Sub(applyStart)
	deadline := time.Now().Add(o.timeout)
	for ready.count() < o.policies && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	allReady := time.Since(applyStart)
	m1.memory()
	fmt.Printf("apply: %d policies created in %s; all served %s after the first create; %d/%d Ready %s after it; manager VmHWM %d MiB, VmRSS %d MiB\n",
		o.policies, applied.Round(time.Millisecond), served.Round(time.Millisecond), ready.count(), o.policies, allReady.Round(time.Millisecond), m1.hwmKiB>>10, m1.rssKB>>10)
	var failures []string
	if n := ready.count(); n < o.policies {
		failures = append(failures, fmt.Sprintf("only %d of %d policies Ready within %s", n, o.policies, o.timeout))
	}
	m1.stop()

	// Phase 2: a manager starting with every policy in place.
	m2, err := startManager(bin, env.Kubeconfig, logs+"-2.log")
	if err != nil {
		return nil, err
	}
	defer m2.stop()
	if err := m2.waitServing(o.policies, o.timeout); err != nil {
		return nil, err
	}
	load := m2.servedAllAt.Sub(m2.started)
	m2.memory()
	fmt.Printf("restart: ready %s and serving all %d policies %s after the process started; manager VmHWM %d MiB, VmRSS %d MiB\n",
		m2.readyAt.Sub(m2.started).Round(time.Millisecond), o.policies, load.Round(time.Millisecond), m2.hwmKiB>>10, m2.rssKB>>10)

	// Phase 3: the first and the last policy answer.
	good, err := iss.Token("RS256", claims(iss))
	if err != nil {
		return nil, err
	}
	forged, err := forger.Token("RS256", claims(iss))
	if err != nil {
		return nil, err
	}
	for _, i := range []int{0, o.policies - 1} {
		ns, name := nsName(i%o.namespaces), fmt.Sprintf("p-%05d", i)
		for tok, want := range map[string]int{good: http.StatusOK, forged: http.StatusUnauthorized} {
			if got := authz("http://"+m2.auth+"/authz/"+ns+"/"+name, tok); got != want {
				failures = append(failures, fmt.Sprintf("%s/%s answered %d, want %d", ns, name, got, want))
			}
		}
	}
	if load > o.maxLoad {
		failures = append(failures, fmt.Sprintf("the restarted manager served every policy after %s, over -max-load %s", load.Round(time.Millisecond), o.maxLoad))
	}
	for _, hwm := range []int{m1.hwmKiB, m2.hwmKiB} {
		if hwm>>10 > o.maxHWMMiB {
			failures = append(failures, fmt.Sprintf("manager VmHWM %d MiB, over -max-hwm %d MiB", hwm>>10, o.maxHWMMiB))
		}
	}
	return failures, nil
}

func nsName(n int) string { return fmt.Sprintf("team-%03d", n) }

func newPolicy(o options, i int, issuer, jwks string) *authv1alpha1.JWTPolicy {
	return &authv1alpha1.JWTPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsName(i % o.namespaces), Name: fmt.Sprintf("p-%05d", i)},
		Spec: authv1alpha1.JWTPolicySpec{
			// Selects no Ingress: the scenario is about policies (hack/scale wires Ingresses).
			IngressSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"policy": strconv.Itoa(i)}},
			Issuers: []authv1alpha1.Issuer{{
				Issuer: issuer, Audiences: []string{"orders-api"},
				JWKS: authv1alpha1.JWKSSource{Inline: jwks},
			}},
			RequiredClaims: []authv1alpha1.RequiredClaim{{Claim: "scope", Operator: authv1alpha1.OpContainsAny, Values: []string{"orders:read"}}},
			ForwardClaims:  []authv1alpha1.ForwardClaim{{Claim: "sub", Header: "X-Auth-Subject"}, {Claim: "email", Header: "X-Auth-Email"}},
		},
	}
}

func claims(iss *authztest.Issuer) map[string]any {
	c := iss.Claims("alice", time.Now())
	c["scope"] = "orders:read"
	return c
}

// readyCount counts the policies whose Ready condition is True for their generation, from a
// watch (a list of 10,000 policies every few seconds would load the API server more than the
// manager does).
type readyCount struct {
	mu    sync.Mutex
	ready map[string]bool
}

func (r *readyCount) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ready)
}

func (r *readyCount) see(p *authv1alpha1.JWTPolicy) {
	cond := meta.FindStatusCondition(p.Status.Conditions, authv1alpha1.ConditionReady)
	if cond != nil && cond.Status == metav1.ConditionTrue && cond.ObservedGeneration == p.Generation {
		r.mu.Lock()
		r.ready[p.Namespace+"/"+p.Name] = true
		r.mu.Unlock()
	}
}

// watch lists and watches JWTPolicies until ctx ends, resuming from the last resourceVersion
// when the API server closes the watch and listing again when that version is gone.
func (r *readyCount) watch(ctx context.Context, c client.WithWatch) error {
	relist := func() (string, error) {
		var list authv1alpha1.JWTPolicyList
		if err := c.List(ctx, &list); err != nil {
			return "", err
		}
		for i := range list.Items {
			r.see(&list.Items[i])
		}
		return list.ResourceVersion, nil
	}
	rv, err := relist()
	if err != nil {
		return err
	}
	go func() {
		for ctx.Err() == nil {
			w, err := c.Watch(ctx, &authv1alpha1.JWTPolicyList{}, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
			if err != nil {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			gone := false
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					gone = true
					break
				}
				if p, ok := ev.Object.(*authv1alpha1.JWTPolicy); ok {
					rv = p.ResourceVersion
					r.see(p)
				}
			}
			w.Stop()
			if gone && ctx.Err() == nil {
				if v, err := relist(); err == nil {
					rv = v
				}
			}
		}
	}()
	return nil
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func parallel(workers, n int, fn func(int) error) error {
	next := make(chan int)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("item %d: %w", i, err)
					}
					mu.Unlock()
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

func status(url string) int {
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// gauge reads one sample, by its exact series name and labels, from a metrics page.
func gauge(url, series string) (float64, bool) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

func authz(url, token string) int {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Original-Url", "https://shop.example.com/orders/42")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// procStatus returns a field of /proc/<pid>/status in KiB (0 when unreadable).
