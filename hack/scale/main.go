// Command scale measures the controller at scale: it starts a real API server (envtest),
// creates Ingresses in many namespaces, runs `claimguard manager` as a process, applies
// JWTPolicies and reports, per policy, the time from its create to Ready=True with every
// selected Ingress wired, and the manager's peak memory (VmHWM).
//
//	go run ./hack/scale                       # 1,000 policies, 5,000 Ingresses, 500 namespaces
//	go run ./hack/scale -rate 0 -workers 16   # all policies at once, 16 parallel clients
//
// It is a benchmark, not a test: it is not run by `make test`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/controllers"
	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

type options struct {
	namespaces, ingressesPerNS, policiesPerNS int
	rate                                      float64
	workers                                   int
	binary                                    string
	managerArgs                               string
	timeout                                   time.Duration
}

func main() {
	var o options
	flag.IntVar(&o.namespaces, "namespaces", 500, "namespaces")
	flag.IntVar(&o.ingressesPerNS, "ingresses-per-namespace", 10, "Ingresses per namespace, split evenly between the namespace's policies")
	flag.IntVar(&o.policiesPerNS, "policies-per-namespace", 2, "JWTPolicies per namespace")
	flag.Float64Var(&o.rate, "rate", 50, "policies applied per second; 0: as fast as the workers go")
	flag.IntVar(&o.workers, "workers", 8, "parallel clients applying policies")
	flag.StringVar(&o.binary, "binary", "", "claimguard binary; empty: go build one")
	flag.StringVar(&o.managerArgs, "manager-args", "", "extra manager flags, space separated")
	flag.DurationVar(&o.timeout, "timeout", 5*time.Minute, "give up when not converged this long after the first apply")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// timeline is when each policy was created, Ready, and each of its Ingresses wired.
type timeline struct {
	mu      sync.Mutex
	created map[string]time.Time
	ready   map[string]time.Time
	wired   map[string]time.Time // ingress "ns/name" -> first time wired to its policy
	owner   map[string]string    // ingress -> policy it should be wired to
	// versions counts the versions of policies and Ingresses seen after the first apply,
	// by resourceVersion, to show how many writes the controller spent.
	versions map[string]map[string]bool
}

func run(o options) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fmt.Printf("scale: %d namespaces, %d Ingresses, %d JWTPolicies; rate %v/s, %d workers\n",
		o.namespaces, o.namespaces*o.ingressesPerNS, o.namespaces*o.policiesPerNS, o.rate, o.workers)

	bin := o.binary
	if bin == "" {
		dir, err := os.MkdirTemp("", "claimguard-scale-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin = filepath.Join(dir, "claimguard")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = testenv.RepoRoot()
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build claimguard: %w", err)
		}
	}

	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		return err
	}
	defer env.Stop()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = 2000, 4000
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: env.Scheme})
	if err != nil {
		return err
	}

	iss, err := authztest.NewIssuer("https://idp.example.com/realms/shop")
	if err != nil {
		return err
	}
	tl := &timeline{created: map[string]time.Time{}, ready: map[string]time.Time{}, wired: map[string]time.Time{}, owner: map[string]string{},
		versions: map[string]map[string]bool{"JWTPolicy": {}, "Ingress": {}}}

	// The world before the manager: namespaces, an IngressClass, Ingresses.
	start := time.Now()
	if err := c.Create(ctx, &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}); err != nil {
		return err
	}
	var objs []client.Object
	for n := range o.namespaces {
		ns := fmt.Sprintf("team-%03d", n)
		objs = append(objs, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	if err := parallel(ctx, 32, len(objs), 0, func(i int) error { return c.Create(ctx, objs[i]) }); err != nil {
		return err
	}
	objs = objs[:0]
	for n := range o.namespaces {
		ns := fmt.Sprintf("team-%03d", n)
		for i := range o.ingressesPerNS {
			group := i % o.policiesPerNS
			name := fmt.Sprintf("svc-%02d", i)
			tl.owner[ns+"/"+name] = fmt.Sprintf("policy-%d", group)
			objs = append(objs, &networkingv1.Ingress{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"group": strconv.Itoa(group)}},
				Spec: networkingv1.IngressSpec{
					IngressClassName: ptr.To("nginx"),
					Rules: []networkingv1.IngressRule{{Host: name + "." + ns + ".example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
						Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: ptr.To(networkingv1.PathTypePrefix), Backend: networkingv1.IngressBackend{
							Service: &networkingv1.IngressServiceBackend{Name: name, Port: networkingv1.ServiceBackendPort{Number: 80}},
						}}},
					}}}},
				},
			})
		}
	}
	if err := parallel(ctx, 32, len(objs), 0, func(i int) error { return c.Create(ctx, objs[i]) }); err != nil {
		return err
	}
	fmt.Printf("created %d namespaces and %d Ingresses in %s\n", o.namespaces, len(objs), time.Since(start).Round(time.Millisecond))

	// The manager, as a process.
	probes, err := testenv.LoopbackAddr()
	if err != nil {
		return err
	}
	auth, err := testenv.LoopbackAddr()
	if err != nil {
		return err
	}
	args := []string{"manager", "--kubeconfig", env.Kubeconfig, "--leader-elect=false",
		"--metrics-bind-address", "0", "--health-probe-bind-address", probes, "--auth-bind-address", auth, "--shutdown-delay", "0s"}
	if o.managerArgs != "" {
		args = append(args, strings.Fields(o.managerArgs)...)
	}
	logFile, err := os.CreateTemp("", "claimguard-scale-manager-*.log")
	if err != nil {
		return err
	}
	defer logFile.Close()
	mgr := exec.Command(bin, args...)
	mgr.Stdout, mgr.Stderr = logFile, logFile
	mgr.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := mgr.Start(); err != nil {
		return err
	}
	defer func() {
		_ = mgr.Process.Signal(syscall.SIGTERM)
		_ = mgr.Wait()
	}()
	if err := waitReady("http://"+probes+"/readyz", 60*time.Second); err != nil {
		return fmt.Errorf("%w (manager log: %s)", err, logFile.Name())
	}
	fmt.Printf("manager ready (pid %d, VmRSS %s, log %s)\n", mgr.Process.Pid, procStatus(mgr.Process.Pid, "VmRSS"), logFile.Name())

	// Watch policies and Ingresses from before the first apply.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	resumes := &counter{}
	if err := watchLoop(wctx, c, &authv1alpha1.JWTPolicyList{}, tl.policyEvent, resumes); err != nil {
		return err
	}
	if err := watchLoop(wctx, c, &networkingv1.IngressList{}, tl.ingressEvent, resumes); err != nil {
		return err
	}

	total := o.namespaces * o.policiesPerNS
	jwks := iss.PublicJWKS()
	tl.mu.Lock()
	ingressVersionsBefore := len(tl.versions["Ingress"])
	tl.mu.Unlock()
	cpuBefore := controlPlaneCPU()
	applyStart := time.Now()
	err = parallel(ctx, o.workers, total, o.rate, func(i int) error {
		ns, group := fmt.Sprintf("team-%03d", i/o.policiesPerNS), i%o.policiesPerNS
		p := &authv1alpha1.JWTPolicy{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("policy-%d", group)},
			Spec: authv1alpha1.JWTPolicySpec{
				IngressSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"group": strconv.Itoa(group)}},
				Issuers: []authv1alpha1.Issuer{{
					Issuer: iss.URL, Audiences: []string{"orders-api"},
					JWKS: authv1alpha1.JWKSSource{Inline: jwks},
				}},
				RequiredClaims: []authv1alpha1.RequiredClaim{
					{Claim: "scope", Operator: authv1alpha1.OpContainsAny, Values: []string{"orders:read"}},
					{Claim: "email", Operator: authv1alpha1.OpMatches, Values: []string{`^[^@]+@example\.com$`}},
				},
				Rules:         []authv1alpha1.Rule{{Expression: "claims.exp - claims.iat <= 3600", Message: "token lifetime longer than one hour"}},
				ForwardClaims: []authv1alpha1.ForwardClaim{{Claim: "sub", Header: "X-Auth-Subject"}, {Claim: "email", Header: "X-Auth-Email"}},
			},
		}
		t0 := time.Now()
		if err := c.Create(ctx, p); err != nil {
			return err
		}
		tl.mu.Lock()
		tl.created[ns+"/"+p.Name] = t0
		tl.mu.Unlock()
		return nil
	})
	if err != nil {
		return err
	}
	applied := time.Since(applyStart)

	// Wait until every policy is Ready and every Ingress wired.
	deadline := time.Now().Add(o.timeout)
	for {
		tl.mu.Lock()
		ready, wired := len(tl.ready), len(tl.wired)
		tl.mu.Unlock()
		if ready == total && wired == len(tl.owner) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not converged after %s: %d/%d policies Ready, %d/%d Ingresses wired; not Ready: %s",
				o.timeout, ready, total, wired, len(tl.owner), tl.notReady(ctx, c))
		}
		time.Sleep(100 * time.Millisecond)
	}
	converged := time.Since(applyStart)

	lat := tl.latencies(o)
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Printf("applied %d policies in %s; all Ready and wired %s after the first apply\n", total, applied.Round(time.Millisecond), converged.Round(time.Millisecond))
	fmt.Printf("apply -> Ready and wired, per policy: median %s, p90 %s, p99 %s, max %s\n",
		pct(0.5).Round(time.Millisecond), pct(0.9).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	cpuAfter := controlPlaneCPU()
	fmt.Printf("CPU from the first apply to convergence: kube-apiserver %s, etcd %s (wall %s, 2 cores shared with the manager and this harness)\n",
		(cpuAfter["kube-apiserver"] - cpuBefore["kube-apiserver"]).Round(10*time.Millisecond),
		(cpuAfter["etcd"] - cpuBefore["etcd"]).Round(10*time.Millisecond), converged.Round(time.Millisecond))
	time.Sleep(2 * time.Second) // idle passes after convergence must not write either
	tl.mu.Lock()
	fmt.Printf("writes seen: %.2f versions per JWTPolicy (create, finalizer, status), %.2f new versions per Ingress\n",
		float64(len(tl.versions["JWTPolicy"]))/float64(total), float64(len(tl.versions["Ingress"])-ingressVersionsBefore)/float64(len(tl.owner)))
	tl.mu.Unlock()
	if n := resumes.get(); n > 0 {
		fmt.Printf("(the API server closed the harness's watches %d times; they were resumed)\n", n)
	}
	fmt.Printf("manager memory: VmHWM %s, VmRSS %s; CPU %s\n", procStatus(mgr.Process.Pid, "VmHWM"), procStatus(mgr.Process.Pid, "VmRSS"), procCPU(mgr.Process.Pid))
	return nil
}

// latencies returns, per policy, the time from its create to the later of Ready and the last
// of its Ingresses wired.
func (tl *timeline) latencies(o options) []time.Duration {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	done := map[string]time.Time{}
	for k, t := range tl.ready {
		done[k] = t
	}
	for ing, t := range tl.wired {
		ns, _, _ := strings.Cut(ing, "/")
		k := ns + "/" + tl.owner[ing]
		if t.After(done[k]) {
			done[k] = t
		}
	}
	out := make([]time.Duration, 0, len(tl.created))
	for k, t0 := range tl.created {
		out = append(out, done[k].Sub(t0))
	}
	return out
}

// notReady describes a few policies that never became Ready, for the error.
func (tl *timeline) notReady(ctx context.Context, c client.Client) string {
	var list authv1alpha1.JWTPolicyList
	if err := c.List(ctx, &list); err != nil {
		return err.Error()
	}
	var out []string
	for _, p := range list.Items {
		tl.mu.Lock()
		_, ok := tl.ready[p.Namespace+"/"+p.Name]
		tl.mu.Unlock()
		if ok {
			continue
		}
		conds := make([]string, 0, len(p.Status.Conditions))
		for _, c := range p.Status.Conditions {
			conds = append(conds, fmt.Sprintf("%s=%s/%s(gen %d)", c.Type, c.Status, c.Reason, c.ObservedGeneration))
		}
		out = append(out, fmt.Sprintf("%s/%s gen %d observed %d finalizers %v [%s]", p.Namespace, p.Name, p.Generation, p.Status.ObservedGeneration, p.Finalizers, strings.Join(conds, " ")))
		if len(out) == 3 {
			break
		}
	}
	return strings.Join(out, "; ")
}

func (tl *timeline) policyEvent(obj client.Object, now time.Time) {
	p, ok := obj.(*authv1alpha1.JWTPolicy)
	if !ok {
		return
	}
	tl.mu.Lock()
	tl.versions["JWTPolicy"][p.Namespace+"/"+p.Name+"@"+p.ResourceVersion] = true
	tl.mu.Unlock()
	c := meta.FindStatusCondition(p.Status.Conditions, authv1alpha1.ConditionReady)
	if c == nil || c.Status != metav1.ConditionTrue || p.Status.ObservedGeneration != p.Generation {
		return
	}
	tl.mu.Lock()
	if _, seen := tl.ready[p.Namespace+"/"+p.Name]; !seen {
		tl.ready[p.Namespace+"/"+p.Name] = now
	}
	tl.mu.Unlock()
}

func (tl *timeline) ingressEvent(obj client.Object, now time.Time) {
	ing, ok := obj.(*networkingv1.Ingress)
	if !ok {
		return
	}
	k := ing.Namespace + "/" + ing.Name
	tl.mu.Lock()
	tl.versions["Ingress"][k+"@"+ing.ResourceVersion] = true
	if _, seen := tl.wired[k]; !seen && ing.Annotations[controllers.AnnotationPolicy] == tl.owner[k] &&
		strings.HasSuffix(ing.Annotations[controllers.AnnotationNginxAuthURL], "/authz/"+ing.Namespace+"/"+tl.owner[k]) {
		tl.wired[k] = now
	}
	tl.mu.Unlock()
}

type counter struct {
	mu sync.Mutex
	n  int
}

func (c *counter) inc() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func (c *counter) get() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// watchLoop lists list's kind and then watches it, calling fn with every object and the time
// it was seen. The API server closes watchers that fall behind under a burst; the loop resumes
// from the last resourceVersion seen (counted in resumes), and lists again when that is too
// old, so no change is missed. A resumed watch reports changes late, never early: latencies
// are overestimated, if anything.
func watchLoop(ctx context.Context, c client.WithWatch, list client.ObjectList, fn func(client.Object, time.Time), resumes *counter) error {
	relist := func() (string, error) {
		l := list.DeepCopyObject().(client.ObjectList)
		if err := c.List(ctx, l); err != nil {
			return "", err
		}
		now := time.Now()
		items, err := meta.ExtractList(l)
		if err != nil {
			return "", err
		}
		for _, it := range items {
			fn(it.(client.Object), now)
		}
		return l.GetResourceVersion(), nil
	}
	rv, err := relist()
	if err != nil {
		return err
	}
	go func() {
		for ctx.Err() == nil {
			w, err := c.Watch(ctx, list.DeepCopyObject().(client.ObjectList), &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true}})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				if rv, err = relist(); err != nil {
					continue
				}
				continue
			}
			gone := false
			for ev := range w.ResultChan() {
				if ev.Type == watch.Error {
					gone = true
					break
				}
				obj, ok := ev.Object.(client.Object)
				if !ok {
					continue
				}
				rv = obj.GetResourceVersion()
				if ev.Type != watch.Bookmark {
					fn(obj, time.Now())
				}
			}
			w.Stop()
			if ctx.Err() != nil {
				return
			}
			resumes.inc()
			if gone {
				if r, err := relist(); err == nil {
					rv = r
				}
			}
		}
	}()
	return nil
}

// parallel runs fn(0..n-1) on workers goroutines, at most rate calls per second (0: no limit).
func parallel(ctx context.Context, workers, n int, rate float64, fn func(int) error) error {
	next := make(chan int)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					select {
					case errs <- fmt.Errorf("item %d: %w", i, err):
					default:
					}
				}
			}
		}()
	}
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer t.Stop()
		tick = t.C
	}
	var err error
feed:
	for i := range n {
		if tick != nil {
			<-tick
		}
		select {
		case next <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

func waitReady(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("manager not ready within " + timeout.String())
}

// procStatus returns a field of /proc/<pid>/status, such as "VmHWM", in MiB.
func procStatus(pid int, field string) string {
	kib, err := testenv.ProcStatusKiB(pid, field)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.0f MiB", float64(kib)/1024)
}

// procCPU returns user+system CPU time of pid from /proc/<pid>/stat.
func procCPU(pid int) string {
	d, _, _, ok := procStat(pid)
	if !ok {
		return "?"
	}
	return d.String()
}

// procStat returns a process's CPU time (user+system, at USER_HZ 100), parent and name.
func procStat(pid int) (cpu time.Duration, ppid int, name string, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, "", false
	}
	s := string(b)
	open, end := strings.Index(s, "("), strings.LastIndex(s, ")")
	if open < 0 || end < open {
		return 0, 0, "", false
	}
	f := strings.Fields(s[end+2:])
	ppid, _ = strconv.Atoi(f[1])
	u, _ := strconv.Atoi(f[11])
	st, _ := strconv.Atoi(f[12])
	return time.Duration(u+st) * time.Second / 100, ppid, s[open+1 : end], true
}

// controlPlaneCPU returns the CPU time of this process's kube-apiserver and etcd children.
func controlPlaneCPU() map[string]time.Duration {
	out := map[string]time.Duration{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cpu, ppid, name, ok := procStat(pid)
		if ok && ppid == self && (name == "kube-apiserver" || name == "etcd") {
			out[name] += cpu
		}
	}
	return out
}
