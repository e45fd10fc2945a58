package cli_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

var testIssuer = sync.OnceValue(func() *authztest.Issuer {
	iss, err := authztest.NewIssuer("https://idp.example.com/realms/shop")
	if err != nil {
		panic(err)
	}
	return iss
})

// policyYAML is a JWTPolicy document trusting testIssuer's inline keys, with
// extra lines appended to its spec.
func policyYAML(ns, name, extra string) string {
	return fmt.Sprintf(`apiVersion: auth.claimguard.dev/v1alpha1
kind: JWTPolicy
metadata: {name: %s, namespace: %s}
spec:
  issuers:
  - issuer: %s
    audiences: [orders-api]
    jwks:
      inline: '%s'
  forwardClaims: [{claim: sub, header: X-Auth-Subject}]
%s`, name, ns, testIssuer().URL, testIssuer().PublicJWKS(), extra)
}

func writePolicyFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func mint(t *testing.T, alg string, mod func(map[string]any)) string {
	t.Helper()
	c := testIssuer().Claims("alice", time.Now())
	if mod != nil {
		mod(c)
	}
	tok, err := testIssuer().Token(alg, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestServeBadFlags(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	writePolicyFile(t, file, policyYAML("shop", "orders", ""))
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no policy file", []string{"serve"}, "--policy-file is required"},
		{"bad listen", []string{"serve", "--policy-file", file, "--listen", "nowhere"}, "--listen"},
		{"half TLS", []string{"serve", "--policy-file", file, "--tls-cert-file", "c.pem"}, "--tls-cert-file and --tls-key-file"},
		{"token cap", []string{"serve", "--policy-file", file, "--max-token-bytes", "0"}, "--max-token-bytes"},
		{"secret dir", []string{"serve", "--policy-file", file, "--secret-dir", filepath.Join(dir, "none")}, "--secret-dir"},
		{"stray argument", []string{"serve", "--policy-file", file, "extra"}, "unknown command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := run(tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if strings.Count(strings.TrimRight(errOut, "\n"), "\n") != 0 || !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q: want one line saying %q", errOut, tc.want)
			}
		})
	}
}

// TestServeInvalidFileAtStart: the process exits non-zero and prints one
// line per problem with file, document, policy, field and reason.
func TestServeInvalidFileAtStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "p.yaml")
	bad := strings.Replace(policyYAML("shop", "bad", "  bogus: 1\n"), "inline: '", "uri: 'ftp://idp.example.com/jwks' #", 1)
	writePolicyFile(t, file, policyYAML("shop", "orders", "")+"---\n"+bad+"---\n"+policyYAML("shop", "bad2", "  requiredClaims: [{claim: sub, operator: In}]\n"))
	cmd := exec.Command(binary, "serve", "--policy-file", file, "--listen", testenv.FreeAddr(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err == nil || !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("serve with an invalid file: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	want := []string{
		"error: " + file + ": document 2 (shop/bad): spec.bogus: unknown field",
	}
	if len(lines) != 1 || lines[0] != want[0] {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), strings.Join(want, "\n"))
	}

	// With the decoding problem fixed, the compile problems are reported.
	writePolicyFile(t, file, policyYAML("shop", "orders", "")+"---\n"+strings.Replace(bad, "  bogus: 1\n", "", 1)+"---\n"+policyYAML("shop", "bad2", "  requiredClaims: [{claim: sub, operator: In}]\n"))
	stderr.Reset()
	cmd = exec.Command(binary, "serve", "--policy-file", file, "--listen", testenv.FreeAddr(t))
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil {
		t.Fatal("serve started with a policy that does not compile")
	}
	lines = strings.Split(strings.TrimSpace(stderr.String()), "\n")
	prefixes := []string{
		"error: " + file + ": document 2 (shop/bad): spec.issuers[0].jwks.uri: ",
		"error: " + file + ": document 3 (shop/bad2): spec.requiredClaims[0].values: ",
	}
	if len(lines) != len(prefixes) {
		t.Fatalf("want %d lines, got:\n%s", len(prefixes), stderr.String())
	}
	for i, p := range prefixes {
		if !strings.HasPrefix(lines[i], p) || len(lines[i]) == len(p) {
			t.Errorf("line %d %q: want %q and a reason", i+1, lines[i], p)
		}
	}
}

// TestServeProcess runs `claimguard serve` as a process: ready once loaded,
// answers the contract, keeps the last good policies on an invalid edit,
// takes a valid edit, and stops cleanly on SIGTERM.
func TestServeProcess(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "p.yaml")
	writePolicyFile(t, file, policyYAML("shop", "orders", ""))
	addr := testenv.FreeAddr(t)
	cmd := exec.Command(binary, "serve", "--policy-file", file, "--listen", addr)
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()
	base := "http://" + addr
	waitHTTP(t, base+"/readyz", http.StatusOK)

	tok := mint(t, "RS256", nil)
	get := func() (int, http.Header) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/authz/shop/orders", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	if code, h := get(); code != 200 || h.Get("X-Auth-Subject") != "alice" {
		t.Fatalf("allow: %d %v", code, h)
	}

	writePolicyFile(t, file, policyYAML("shop", "orders", "  bogus: 1\n"))
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "spec.bogus: unknown field") {
		if time.Now().After(deadline) {
			t.Fatalf("the invalid edit was not logged:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := get(); code != 200 {
		t.Errorf("after an invalid edit the old policy must stay in force, got %d", code)
	}
	if body := waitHTTP(t, base+"/metrics", 200); !strings.Contains(body, "claimguard_policy_last_reload_success 0") {
		t.Errorf("metrics do not show the failed reload")
	}

	writePolicyFile(t, file, strings.Replace(policyYAML("shop", "orders", ""), "audiences: [orders-api]", "audiences: [billing]", 1))
	deadline = time.Now().Add(15 * time.Second)
	for {
		if code, _ := get(); code == 401 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the valid edit did not take effect:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v after SIGTERM:\n%s", err, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s of SIGTERM")
	}
	for _, part := range strings.Split(tok, ".") {
		if strings.Contains(logs.String(), part) {
			t.Error("serve logged a token segment")
		}
	}
}

func TestHelpListsServeAndExplain(t *testing.T) {
	out, _, code := run("--help")
	if code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, sub := range []string{"serve", "explain"} {
		if !strings.Contains(out, "\n  "+sub+" ") {
			t.Errorf("--help does not list %q:\n%s", sub, out)
		}
	}
	for _, sub := range []string{"serve", "explain"} {
		if out, _, code := run(sub, "--help"); code != 0 || !strings.Contains(out, "--policy-file") {
			t.Errorf("%s --help: exit %d\n%s", sub, code, out)
		}
	}
}
