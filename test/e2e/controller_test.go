package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/claimguard/claimguard/controllers"
	"github.com/claimguard/claimguard/internal/proxytest"
	"github.com/claimguard/claimguard/internal/testenv"
)

// managerUser creates a user bound only to the generated config/rbac ClusterRole, so the
// manager process below also proves the RBAC markers are sufficient, and returns its
// kubeconfig file.
func managerUser(t *testing.T, env *testenv.Env) string {
	t.Helper()
	ctx := context.Background()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.Unmarshal(raw, role); err != nil {
		t.Fatal(err)
	}
	role.Name = "claimguard-e2e-manager"
	if err := env.Client.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	const user = "claimguard-e2e-manager"
	if err := env.Client.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "claimguard-e2e-manager"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: user}},
	}); err != nil {
		t.Fatal(err)
	}
	u, err := env.AddUser(envtest.User{Name: user}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := u.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "manager.kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// nginxFromIngress renders what ingress-nginx would make of the Ingress: no auth-url
// annotation, no auth_request; with one, auth_request to that URL (its host mapped to the
// manager's auth listener, standing in for the Service) copying auth-response-headers.
func nginxFromIngress(t *testing.T, ing *networkingv1.Ingress, authAddr, upstream string) proxytest.Config {
	t.Helper()
	cfg := proxytest.Config{Upstream: upstream}
	raw := ing.Annotations[controllers.AnnotationNginxAuthURL]
	if raw == "" {
		return cfg
	}
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("auth-url %q: %v", raw, err)
	}
	if !strings.HasSuffix(u.Hostname(), ".svc") {
		t.Fatalf("auth-url %q does not name a Service", raw)
	}
	u.Host = authAddr
	cfg.AuthURL = u.String()
	for _, h := range strings.Split(ing.Annotations[controllers.AnnotationNginxAuthResponseHeaders], ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.ResponseHeaders = append(cfg.ResponseHeaders, h)
		}
	}
	return cfg
}

// ingressSync plays ingress-nginx: it watches one Ingress (by polling) and reloads nginx when
// the wiring annotations change.
type ingressSync struct {
	mu      sync.Mutex
	reloads int
	err     error
	stop    chan struct{}
	done    chan struct{}
}

func startIngressSync(t *testing.T, env *testenv.Env, key crclient.ObjectKey, p *proxytest.Proxy, authAddr, upstream string) *ingressSync {
	s := &ingressSync{stop: make(chan struct{}), done: make(chan struct{})}
	last := ""
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			ing := &networkingv1.Ingress{}
			if err := env.Client.Get(context.Background(), key, ing); err != nil {
				continue
			}
			cfg := nginxFromIngress(t, ing, authAddr, upstream)
			sig := cfg.AuthURL + "|" + strings.Join(cfg.ResponseHeaders, ",")
			if sig == last {
				continue
			}
			err := p.Reload(cfg)
			s.mu.Lock()
			s.reloads++
			if err != nil && s.err == nil {
				s.err = err
			}
			s.mu.Unlock()
			if err == nil {
				last = sig
			}
		}
	}()
	t.Cleanup(func() {
		close(s.stop)
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.err != nil {
			t.Errorf("nginx reload: %v", s.err)
		}
	})
	return s
}

type proxyAnswer struct {
	status  int
	www     string
	subject string // X-Auth-Subject as the upstream received it
	reached bool   // the request reached the upstream
}

func getThrough(t *testing.T, proxyURL, token string) proxyAnswer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, proxyURL+"/orders/42", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	// Claim headers must come from claimguard, never from the client.
	req.Header.Set("X-Auth-Subject", "mallory")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := proxyAnswer{status: resp.StatusCode, www: resp.Header.Get("WWW-Authenticate")}
	body, _ := io.ReadAll(resp.Body)
	var echo proxytest.Echo
	if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &echo) == nil && echo.URI != "" {
		a.reached = true
		a.subject = strings.Join(echo.Header["X-Auth-Subject"], ",")
	}
	return a
}

// waitFor is testenv.Eventually with the manager's log in the failure.
func waitFor(t *testing.T, timeout time.Duration, what string, logs fmt.Stringer, cond func() error) {
	t.Helper()
	if _, err := testenv.Poll(timeout, cond); err != nil {
		t.Fatalf("%s: not within %s: %v\nmanager log:\n%s", what, timeout, err, logs)
	}
}

func kubectl(t *testing.T, kubeconfig string, stdin string, args ...string) {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestManagerWiresNginx is the operator end to end: a real API server, `claimguard manager` as
// a process with leader election and only its generated RBAC, real nginx configured from the
// Ingress the way ingress-nginx would, and real kubectl. Applying a policy turns the open
// route into an enforced one (no token 401, a good token 200 with the claim header); deleting
// it opens the route again.
func TestManagerWiresNginx(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Fatal("kubectl is required: ", err)
	}
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	ctx := context.Background()
	iss := issuer()

	for _, obj := range []crclient.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}},
		&networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}},
		&networkingv1.Ingress{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders", Labels: map[string]string{"app": "orders"}},
			Spec: networkingv1.IngressSpec{
				IngressClassName: ptr.To("nginx"),
				DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: "orders", Port: networkingv1.ServiceBackendPort{Number: 80},
				}},
			},
		},
	} {
		if err := env.Client.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}

	authAddr, probes := testenv.FreeAddr(t), testenv.FreeAddr(t)
	logs := &testenv.SyncBuffer{}
	mgr := exec.Command(binary, "manager",
		"--kubeconfig", managerUser(t, env),
		"--leader-elect=true",
		"--leader-election-namespace", "default",
		"--leader-election-id", "claimguard-e2e",
		"--metrics-bind-address", "0",
		"--health-probe-bind-address", probes,
		"--auth-bind-address", authAddr,
		"--auth-service-namespace", "claimguard-system",
		"--shutdown-delay", "0s",
		// No webhook configurations here: the admission webhooks have their own tests.
		"--webhook-bind-address", "0",
	)
	mgr.Stdout, mgr.Stderr = logs, logs
	mgr.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := mgr.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- mgr.Wait() }()
	t.Cleanup(func() {
		if mgr.ProcessState == nil {
			_ = mgr.Process.Kill()
			<-exited
		}
	})
	waitFor(t, 60*time.Second, "manager ready", logs, func() error {
		resp, err := http.Get("http://" + probes + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})

	up, err := proxytest.StartUpstream()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	ing := &networkingv1.Ingress{}
	if err := env.Client.Get(ctx, crclient.ObjectKey{Namespace: "shop", Name: "orders"}, ing); err != nil {
		t.Fatal(err)
	}
	nginx, err := proxytest.StartNginx(nginxFromIngress(t, ing, authAddr, up.Addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nginx.Stop)
	startIngressSync(t, env, crclient.ObjectKeyFromObject(ing), nginx, authAddr, up.Addr)

	// Before any policy: the route is open.
	if a := getThrough(t, nginx.URL, ""); a.status != http.StatusOK || !a.reached {
		t.Fatalf("open route: %+v", a)
	}

	manifest := fmt.Sprintf(`apiVersion: auth.claimguard.dev/v1alpha1
kind: JWTPolicy
metadata: {name: orders-api, namespace: shop}
spec:
  ingressSelector:
    matchLabels: {app: orders}
  issuers:
  - issuer: %s
    audiences: [orders-api]
    jwks:
      inline: '%s'
  forwardClaims:
  - {claim: sub, header: X-Auth-Subject}
`, iss.URL, iss.PublicJWKS())
	kubectl(t, env.Kubeconfig, manifest, "apply", "-f", "-")

	good := iss.MustToken("RS256", iss.Claims("alice", time.Now()))
	waitFor(t, 30*time.Second, "enforced", logs, func() error {
		if a := getThrough(t, nginx.URL, ""); a.status != http.StatusUnauthorized || a.reached || !strings.HasPrefix(a.www, "Bearer") {
			return fmt.Errorf("no token: %+v", a)
		}
		return nil
	})
	if a := getThrough(t, nginx.URL, good); a.status != http.StatusOK || !a.reached || a.subject != "alice" {
		t.Errorf("good token: %+v, want 200 with X-Auth-Subject alice", a)
	}
	if a := getThrough(t, nginx.URL, good[:len(good)-4]+"AAAA"); a.status != http.StatusUnauthorized || a.reached {
		t.Errorf("forged token: %+v", a)
	}
	expired := iss.Claims("alice", time.Now().Add(-3*time.Hour))
	if a := getThrough(t, nginx.URL, iss.MustToken("ES256", expired)); a.status != http.StatusUnauthorized || !strings.Contains(a.www, "invalid_token") {
		t.Errorf("expired token: %+v", a)
	}

	// The status says so too, written by the leader.
	out, err := exec.Command("kubectl", "--kubeconfig", env.Kubeconfig, "-n", "shop", "get", "jwtpolicy", "orders-api",
		"-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status} {.status.boundIngresses}`).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "True 1" {
		t.Errorf("kubectl get jwtpolicy: %q %v", out, err)
	}

	kubectl(t, env.Kubeconfig, manifest, "delete", "-f", "-")
	waitFor(t, 30*time.Second, "open again", logs, func() error {
		if a := getThrough(t, nginx.URL, ""); a.status != http.StatusOK || !a.reached {
			return fmt.Errorf("no token after delete: %+v", a)
		}
		return nil
	})
	if err := env.Client.Get(ctx, crclient.ObjectKeyFromObject(ing), ing); err != nil {
		t.Fatal(err)
	}
	for k := range ing.Annotations {
		if strings.HasPrefix(k, "nginx.ingress.kubernetes.io/") || k == controllers.AnnotationPolicy {
			t.Errorf("annotation %s left after the policy was deleted", k)
		}
	}

	if err := mgr.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("manager exited with %v after SIGTERM\n%s", err, logs)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("manager did not stop within 30s of SIGTERM\n%s", logs)
	}
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, good) || strings.Contains(line, iss.PublicJWKS()) {
			t.Errorf("the manager logged a token or a key set: %.120s", line)
		}
	}
}
