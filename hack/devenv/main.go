package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/claimguard/claimguard/internal/scheme"
)

// options are devenv's flags; hack/dev.sh sets them from the environment.
type options struct {
	root       string
	dir        string
	claimguard string
	assets     string
	authAddr   string
	offline    bool
}

func main() {
	var o options
	flag.StringVar(&o.root, "root", ".", "The repository root (config/ is read from there).")
	flag.StringVar(&o.dir, "dir", ".dev", "Where the kubeconfig, dev key, tokens, policy file and manager log are written.")
	flag.StringVar(&o.claimguard, "claimguard", "bin/claimguard", "The claimguard binary to run.")
	flag.StringVar(&o.assets, "assets", "bin/k8s", "The directory holding kube-apiserver and etcd.")
	flag.StringVar(&o.authAddr, "auth-addr", "127.0.0.1:8443", "The forward-auth listener; a free port is taken when it is busy.")
	flag.BoolVar(&o.offline, "offline", true, "Keep the manager from reaching the network: the samples name identity providers that do not exist, and their key fetches fail at once instead of going out.")
	flag.Parse()
	// Every signal that stops a terminal session stops the environment cleanly, also
	// during start-up; a second Ctrl-C does not cut the clean-up short.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "make dev:", err)
		os.Exit(1)
	}
}

// state is what devenv writes to <dir>/devenv.json while it runs: the addresses and
// process ids of what it started (for scripts and the test that checks nothing is left).
type state struct {
	PID        int    `json:"pid"`
	ManagerPID int    `json:"managerPID"`
	APIServer  string `json:"apiServer"`
	Auth       string `json:"auth"`
	Probes     string `json:"probes"`
	Metrics    string `json:"metrics"`
	Webhooks   string `json:"webhooks"`
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) (retErr error) {
	for _, p := range []*string{&o.root, &o.dir, &o.claimguard, &o.assets} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if err := os.MkdirAll(o.dir, 0o700); err != nil {
		return err
	}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	st := state{PID: os.Getpid()}
	var err error
	if st.Auth, err = listenAddr(o.authAddr); err != nil {
		return err
	}
	if _, port, _ := net.SplitHostPort(o.authAddr); st.Auth != o.authAddr && port != "0" {
		logf("%s is busy; the forward-auth listener takes %s", o.authAddr, st.Auth)
	}
	for _, a := range []*string{&st.Probes, &st.Metrics, &st.Webhooks} {
		if *a, err = listenAddr("127.0.0.1:0"); err != nil {
			return err
		}
	}

	logf("Starting etcd and kube-apiserver")
	env := &envtest.Environment{
		BinaryAssetsDirectory:    o.assets,
		CRDDirectoryPaths:        []string{filepath.Join(o.root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	if _, err := env.Start(); err != nil {
		_ = env.Stop()
		return fmt.Errorf("start the control plane (is %s built? make controlplane): %w", o.assets, err)
	}
	kubeconfig := filepath.Join(o.dir, "kubeconfig")
	defer func() {
		logf("Stopping etcd and kube-apiserver")
		retErr = errors.Join(retErr, env.Stop())
		_ = os.Remove(kubeconfig)
		_ = os.Remove(filepath.Join(o.dir, "manager.kubeconfig"))
		_ = os.Remove(filepath.Join(o.dir, "devenv.json"))
		if retErr == nil {
			logf("Stopped; nothing is left running")
		}
	}()
	st.APIServer = env.ControlPlane.APIServer.SecureServing.Address + ":" + env.ControlPlane.APIServer.SecureServing.Port
	admin, err := writeKubeconfig(env, envtest.User{Name: "dev-admin", Groups: []string{"system:masters"}}, kubeconfig)
	if err != nil {
		return err
	}
	// The manager runs as claimguard's service account would in a cluster, with the
	// generated RBAC and the guard's trust.
	managerKubeconfig := filepath.Join(o.dir, "manager.kubeconfig")
	if _, err := writeKubeconfig(env, envtest.User{
		Name:   "system:serviceaccount:" + systemNamespace + ":" + serviceAccount,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + systemNamespace},
	}, managerKubeconfig); err != nil {
		return err
	}
	c, err := client.New(admin, client.Options{Scheme: scheme.New()})
	if err != nil {
		return err
	}
	if err := createNamespaces(ctx, c); err != nil {
		return err
	}
	if err := installRBAC(ctx, c, o.root); err != nil {
		return err
	}
	if err := installWebhooks(ctx, c, o.root, st.Webhooks); err != nil {
		return err
	}

	logf("Starting claimguard manager (log: %s)", display(o.root, filepath.Join(o.dir, "manager.log")))
	mgr, err := startManager(o, st, managerKubeconfig)
	if err != nil {
		return err
	}
	st.ManagerPID = mgr.cmd.Process.Pid
	defer func() {
		logf("Stopping claimguard manager")
		retErr = errors.Join(retErr, mgr.stop(15*time.Second))
	}()
	if err := writeState(filepath.Join(o.dir, "devenv.json"), st); err != nil {
		return err
	}
	if err := waitReady(ctx, "http://"+st.Probes+"/readyz", mgr, 2*time.Minute); err != nil {
		return err
	}

	key, err := loadOrCreateKey(filepath.Join(o.dir, "dev-key.json"))
	if err != nil {
		return err
	}
	jwks, err := publicJWKS(key)
	if err != nil {
		return err
	}
	// The manager is ready once it serves its certificate, but the API server trusts it
	// only when it has seen the CA bundle the manager injected: until then every JWTPolicy
	// write fails (failurePolicy Fail). A dry run of the dev policy waits for that.
	if err := waitAdmission(ctx, c, devPolicyObject(jwks), mgr, time.Minute); err != nil {
		return err
	}
	n, err := applySamples(ctx, c, o.root)
	if err != nil {
		return err
	}
	logf("Applied config/samples (%d policies) in namespace %s", n, samplesNamespace)
	if err := c.Create(ctx, devPolicyObject(jwks)); err != nil {
		return fmt.Errorf("create the dev policy: %w", err)
	}
	tokens := filepath.Join(o.dir, "tokens")
	if err := mintTokens(key, tokens, time.Now()); err != nil {
		return err
	}
	if err := waitAnswers(ctx, st.Auth, tokens, mgr, time.Minute); err != nil {
		return err
	}
	policies := filepath.Join(o.dir, "policies.yaml")
	if err := exportPolicy(ctx, c, policies); err != nil {
		return fmt.Errorf("export the dev policy: %w", err)
	}
	printInstructions(stdout, o, st, tokens, policies)

	select {
	case <-ctx.Done():
		fmt.Fprintln(stderr)
	case <-mgr.exited:
		return fmt.Errorf("claimguard manager exited: %v; see %s", mgr.err, display(o.root, filepath.Join(o.dir, "manager.log")))
	}
	return nil
}

// listenAddr returns addr when it is free, else a free loopback address.
func listenAddr(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return "", err
		}
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// writeKubeconfig adds a user with a client certificate to the control plane and writes
// its kubeconfig to path.
func writeKubeconfig(env *envtest.Environment, u envtest.User, path string) (*rest.Config, error) {
	user, err := env.AddUser(u, nil)
	if err != nil {
		return nil, fmt.Errorf("add user %s: %w", u.Name, err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, err
	}
	return user.Config(), nil
}

func writeState(path string, st state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// manager is the running claimguard manager process.
type manager struct {
	cmd    *exec.Cmd
	log    *os.File
	exited chan struct{}
	err    error
}

// startManager runs claimguard manager against the dev control plane, logging to
// <dir>/manager.log. Leader election is off (one process); the webhooks are on, served on
// 127.0.0.1 with the self-managed CA (--webhook-cert-extra-sans); shutdown is immediate.
func startManager(o options, st state, kubeconfig string) (*manager, error) {
	log, err := os.Create(filepath.Join(o.dir, "manager.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.claimguard, "manager",
		"--kubeconfig", kubeconfig,
		"--leader-elect=false",
		"--auth-bind-address", st.Auth,
		"--health-probe-bind-address", st.Probes,
		"--metrics-bind-address", st.Metrics,
		"--webhook-bind-address", st.Webhooks,
		"--webhook-service-namespace", systemNamespace,
		"--webhook-cert-extra-sans", "127.0.0.1",
		"--service-account-name", serviceAccount,
		"--service-account-namespace", systemNamespace,
		"--auth-service-namespace", systemNamespace,
		"--shutdown-delay", "0s",
	)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = os.Environ()
	if o.offline {
		// Go's HTTP client sends every non-loopback request through the proxy, and port 9
		// on loopback refuses connections: remote key fetches fail at once and never leave
		// the machine. The API server on 127.0.0.1 is reached directly.
		cmd.Env = append(cmd.Env, "HTTPS_PROXY=http://127.0.0.1:9", "HTTP_PROXY=http://127.0.0.1:9", "NO_PROXY=", "https_proxy=", "http_proxy=", "no_proxy=")
	}
	// Its own process group, so a Ctrl-C in the terminal reaches devenv only, which stops
	// the manager before the API server; and it dies with devenv should devenv be killed.
	cmd.SysProcAttr = childProcAttr()
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", o.claimguard, err)
	}
	m := &manager{cmd: cmd, log: log, exited: make(chan struct{})}
	go func() {
		m.err = cmd.Wait()
		close(m.exited)
	}()
	return m, nil
}

// stop sends SIGTERM and waits, then SIGKILL.
func (m *manager) stop(grace time.Duration) error {
	defer m.log.Close()
	select {
	case <-m.exited:
		return nil
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return nil
	case <-time.After(grace):
		_ = m.cmd.Process.Kill()
		<-m.exited
		return fmt.Errorf("claimguard manager did not stop within %s; killed", grace)
	}
}

// waitReady polls the manager's readiness endpoint.
func waitReady(ctx context.Context, url string, m *manager, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.exited:
			return fmt.Errorf("claimguard manager exited before it was ready: %v; see %s", m.err, m.log.Name())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("claimguard manager not ready after %s; see %s", timeout, m.log.Name())
		}
	}
}

// waitAdmission creates obj as a server-side dry run until the admission webhooks answer.
// Only a failed call to a webhook is waited out; a refusal is an error.
func waitAdmission(ctx context.Context, c client.Client, obj client.Object, m *manager, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.Create(ctx, obj.DeepCopyObject().(client.Object), client.DryRunAll)
		if err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "failed calling webhook") {
			return fmt.Errorf("dry run of the dev policy: %w", err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the API server cannot call claimguard's webhooks after %s: %w; see %s", timeout, err, m.log.Name())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-m.exited:
			return fmt.Errorf("claimguard manager exited: %v; see %s", m.err, m.log.Name())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitAnswers asks the forward-auth endpoint with every dev token until each gets the
// answer the printed instructions promise: the dev policy reaches the manager's snapshot
// moments after it is created.
func waitAnswers(ctx context.Context, auth, tokens string, m *manager, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, dt := range devTokens {
		token, err := os.ReadFile(filepath.Join(tokens, dt.file))
		if err != nil {
			return err
		}
		for {
			status, reason, err := ask(ctx, auth, string(token))
			if err == nil && status == dt.status && reason == dt.reason {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("token %s: got %d %q (%v), want %d %q; see %s", dt.file, status, reason, err, dt.status, dt.reason, m.log.Name())
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-m.exited:
				return fmt.Errorf("claimguard manager exited: %v; see %s", m.err, m.log.Name())
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// requestURL is the original request of the printed examples.
const requestURL = "https://orders.dev.localhost/api/orders/17"

// ask sends one forward-auth request as ingress-nginx would and returns the status and the
// reason code.
func ask(ctx context.Context, auth, token string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+auth+"/authz/"+devNamespace+"/"+devPolicy, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("X-Original-URL", requestURL)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Claimguard-Reason"), nil
}

// display shows path relative to the repository root when it is inside it, as the
// printed commands are meant to be pasted there.
func display(root, path string) string {
	if rel, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return path
}

// printInstructions prints what to try. The tokens are referred to by file: a token is a
// credential and never printed whole.
func printInstructions(w io.Writer, o options, st state, tokens, policies string) {
	curl := func(file string) string {
		return fmt.Sprintf(`curl -si http://%s/authz/%s/%s -H "X-Original-URL: %s" -H "Authorization: Bearer $(cat %s)"`,
			st.Auth, devNamespace, devPolicy, requestURL, display(o.root, filepath.Join(tokens, file)))
	}
	fmt.Fprintf(w, `
claimguard is running on a local control plane. Ctrl-C stops everything.

The dev policy %s/%s (%s) takes ES256 tokens of issuer
%s for audience %s with the scope orders:read,
and forwards sub, email and roles. Its key, and the tokens below, are in %s.
`, devNamespace, devPolicy, display(o.root, policies), devIssuer, devAudience, display(o.root, o.dir))
	for _, dt := range devTokens {
		fmt.Fprintf(w, "\n# %s\n  %s\n", dt.what, curl(dt.file))
	}
	fmt.Fprintf(w, `
# why the 403 (exit code 1: deny)
  %s explain --policy-file %s --policy %s/%s - < %s

# the cluster (policies from config/samples are in namespace %s)
  export KUBECONFIG=%s
  kubectl get jwtpolicies -A
  tail -f %s
`, display(o.root, o.claimguard), display(o.root, policies), devNamespace, devPolicy, display(o.root, filepath.Join(tokens, "forbidden.jwt")),
		samplesNamespace, display(o.root, filepath.Join(o.dir, "kubeconfig")), display(o.root, filepath.Join(o.dir, "manager.log")))
}
