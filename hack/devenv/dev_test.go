package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/claimguard/claimguard/internal/testenv"
)

// TestMakeDev runs `make dev` as a user would, in the background: it waits for the printed
// commands, runs the three curl commands (200 with claim headers, 401, 403) and the explain
// command (exit 1), then presses Ctrl-C (SIGINT to the foreground process group) and checks
// that every process make dev started is gone and its ports are free.
func TestMakeDev(t *testing.T) {
	root := testenv.RepoRoot()
	dir := t.TempDir()
	marker := make([]byte, 8)
	if _, err := rand.Read(marker); err != nil {
		t.Fatal(err)
	}
	// Every process make dev starts inherits the environment, and with it this marker:
	// the test finds them by it, whatever they are called.
	markerEnv := "CLAIMGUARD_DEV_TEST_RUN=" + hex.EncodeToString(marker)
	authAddr := freeAddr(t) // not 8443: other packages' tests may use it

	cmd := exec.Command("make", "--no-print-directory", "dev")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), markerEnv, "DEV_DIR="+dir, "DEV_AUTH_ADDR="+authAddr)
	out := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group, like a job in a terminal, so Ctrl-C can be sent to the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	waited := make(chan struct{})
	go func() {
		err := cmd.Wait()
		close(waited)
		exited <- err
	}()
	t.Cleanup(func() {
		// On a failure path: stop everything the marker finds.
		select {
		case <-waited:
		default:
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
			select {
			case <-exited:
			case <-time.After(60 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		}
		for _, pid := range markedProcesses(t, markerEnv) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	// The first run on a machine builds the control plane and claimguard.
	deadline := time.Now().Add(8 * time.Minute)
	for !strings.Contains(out.String(), "kubectl get jwtpolicies -A") {
		select {
		case err := <-exited:
			t.Fatalf("make dev exited early: %v\n%s", err, out.String())
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("make dev printed no instructions:\n%s", out.String())
		}
	}
	t.Logf("make dev printed its instructions after %s", time.Since(start).Round(time.Millisecond))
	var curls []string
	var explain string
	for _, line := range strings.Split(out.String(), "\n") {
		switch {
		case strings.HasPrefix(line, "  curl "):
			curls = append(curls, strings.TrimSpace(line))
		case strings.HasPrefix(line, "  ") && strings.Contains(line, " explain "):
			explain = strings.TrimSpace(line)
		}
	}
	if len(curls) != 3 || explain == "" {
		t.Fatalf("want three curl commands and an explain command:\n%s", out.String())
	}
	// The README shows these commands as make dev prints them with its defaults.
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(slices.Clone(curls), explain) {
		c = listenerURL.ReplaceAllString(strings.ReplaceAll(c, dir, ".dev"), "http://127.0.0.1:8443/")
		if !strings.Contains(string(readme), "\n  "+c+"\n") {
			t.Errorf("README.md does not show the command as make dev prints it:\n  %s", c)
		}
	}
	for i, want := range []struct {
		status string
		lines  []string
	}{
		{"HTTP/1.1 200 OK", []string{"X-Auth-Subject: alice", "X-Auth-Email: alice@example.com", "X-Auth-Roles: admin,ops"}},
		{"HTTP/1.1 401 Unauthorized", []string{"X-Claimguard-Reason: token_expired", `Www-Authenticate: Bearer error="invalid_token"`}},
		{"HTTP/1.1 403 Forbidden", []string{"X-Claimguard-Reason: claim_mismatch", `Www-Authenticate: Bearer error="insufficient_scope"`}},
	} {
		got, err := shell(root, curls[i])
		if err != nil {
			t.Errorf("%s: %v\n%s", curls[i], err, got)
			continue
		}
		if !strings.HasPrefix(got, want.status+"\r\n") {
			t.Errorf("%s: want %s, got:\n%s", curls[i], want.status, got)
		}
		for _, l := range want.lines {
			if !strings.Contains(got, "\n"+l) {
				t.Errorf("%s: no %q in:\n%s", curls[i], l, got)
			}
		}
	}
	got, err := shell(root, explain)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasPrefix(got, "DENY 403 claim_mismatch") {
		t.Errorf("%s: %v, want exit 1 and DENY 403 claim_mismatch:\n%s", explain, err, got)
	}

	// The guard, as the README shows it: a new Ingress in the dev namespace is wired at
	// admission, and a snippet annotation is refused.
	kubeconfig := filepath.Join(dir, "kubeconfig")
	ingress := `apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: orders, namespace: dev}
spec:
  ingressClassName: nginx
  rules:
  - host: orders.dev.localhost
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: orders, port: {number: 80}}}}
`
	apply := exec.Command("kubectl", "--kubeconfig", kubeconfig, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(ingress)
	if got, err := apply.CombinedOutput(); err != nil {
		t.Errorf("kubectl apply of an Ingress: %v\n%s", err, got)
	}
	authURL, err := exec.Command("kubectl", "--kubeconfig", kubeconfig, "get", "ingress", "-n", "dev", "orders",
		"-o", `jsonpath={.metadata.annotations.nginx\.ingress\.kubernetes\.io/auth-url}`).CombinedOutput()
	if err != nil || string(authURL) != "http://claimguard.claimguard-system.svc:8443/authz/dev/orders" {
		t.Errorf("the new Ingress is wired to %q (%v)", authURL, err)
	}
	snippet, err := exec.Command("kubectl", "--kubeconfig", kubeconfig, "annotate", "ingress", "-n", "dev", "orders",
		"nginx.ingress.kubernetes.io/configuration-snippet=auth_request off;").CombinedOutput()
	if err == nil || !strings.Contains(string(snippet), `admission webhook "vingress.claimguard.dev" denied the request`) {
		t.Errorf("a snippet on a guarded Ingress was not refused (%v):\n%s", err, snippet)
	}

	// What is running now, to check after Ctrl-C.
	var st state
	data, err := os.ReadFile(filepath.Join(dir, "devenv.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		t.Fatal(err)
	}
	running := markedProcesses(t, markerEnv)
	names := map[string]bool{}
	for _, pid := range running {
		names[processName(pid)] = true
	}
	for _, want := range []string{"claimguard", "kube-apiserver", "etcd"} {
		if !names[want] {
			t.Errorf("no running %s found among make dev's processes %v", want, names)
		}
	}
	addrs := []string{st.Auth, st.Probes, st.Metrics, st.Webhooks, st.APIServer}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err != nil {
			t.Errorf("%s is not listening while make dev runs: %v", a, err)
		} else {
			c.Close()
		}
	}

	t.Logf("checked the printed commands after %s", time.Since(start).Round(time.Millisecond))
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	stopping := time.Now()
	select {
	case <-exited:
		t.Logf("make dev stopped %s after Ctrl-C", time.Since(stopping).Round(time.Millisecond))
	case <-time.After(90 * time.Second):
		t.Fatalf("make dev did not stop after Ctrl-C:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "Stopped; nothing is left running") {
		t.Errorf("make dev did not report a clean stop:\n%s", out.String())
	}
	for _, pid := range append(running, st.PID, st.ManagerPID) {
		if alive(pid) {
			t.Errorf("process %d (%s) is still running after Ctrl-C", pid, processName(pid))
		}
	}
	if left := markedProcesses(t, markerEnv); len(left) > 0 {
		t.Errorf("processes of make dev left after Ctrl-C: %v", left)
	}
	for _, a := range addrs {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Ctrl-C", a)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the kubeconfig of the stopped control plane is left: %v", err)
	}
}

// listenerURL matches the forward-auth listener in a printed command, whichever port it took.
var listenerURL = regexp.MustCompile(`http://127\.0\.0\.1:[0-9]+/`)

// shell runs a printed command with bash from the repository root, as a user pastes it.
func shell(root, command string) (string, error) {
	c := exec.Command("bash", "-c", command)
	c.Dir = root
	var b bytes.Buffer
	c.Stdout, c.Stderr = &b, &b
	err := c.Run()
	return b.String(), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return testenv.FreeAddr(t)
}

// markedProcesses returns the live processes whose environment holds marker.
func markedProcesses(t *testing.T, marker string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil || !alive(pid) {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if string(kv) == marker {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// alive reports whether pid is a process that has not exited (a zombie has exited).
func alive(pid int) bool {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself hold spaces.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func processName(pid int) string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return "?"
	}
	return filepath.Base(string(bytes.SplitN(data, []byte{0}, 2)[0]))
}
