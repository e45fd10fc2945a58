package reliability

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

// proc is a running claimguard process.
type proc struct {
	name string
	cmd  *exec.Cmd
	logs *testenv.SyncBuffer
	done chan struct{}
	err  error // the Wait result, once done is closed
}

// startProc starts `claimguard args...`. The process dies with the test binary (Pdeathsig), is
// stopped with SIGTERM (then SIGKILL) at cleanup, and its log is printed when the test failed.
func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, logs: &testenv.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.terminate()
		if t.Failed() {
			t.Logf("%s log (tail):\n%s", name, tail(p.logs.String(), 12000))
		}
	})
	return p
}

// running reports whether the process has not exited yet.
func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// terminate stops the process with SIGTERM, and SIGKILL after 20s.
func (p *proc) terminate() {
	if !p.running() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill9 sends SIGKILL and waits for the process to be gone: no drain, no lease release,
// nothing flushed.
func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s: %v", p.name, err)
	}
	<-p.done
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "...\n" + s[len(s)-n:]
}

// waitFor is testenv.Eventually: it fails the test when cond is not true within timeout and
// returns how long it waited.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	return testenv.Eventually(t, timeout, what, cond)
}

// httpClient is shared by the checks; keep-alive like a proxy's auth connection pool.
var httpClient = &http.Client{
	Timeout:   20 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true},
}

// answer is what the forward-auth endpoint said.
type answer struct {
	status  int
	reason  string // X-Claimguard-Reason (denials)
	audit   string // X-Claimguard-Audit
	www     string // WWW-Authenticate
	subject string // X-Auth-Subject (allows)
	latency time.Duration
}

func (a answer) String() string {
	s := strconv.Itoa(a.status)
	if a.reason != "" {
		s += " " + a.reason
	}
	return s
}

// originalRequest are the headers ingress-nginx sends with its auth sub-request.
func originalRequest(path string) http.Header {
	return http.Header{
		"X-Original-Url":    {"https://shop.example.com" + path},
		"X-Original-Method": {"GET"},
	}
}

// ask sends one forward-auth request for the policy ns/name with token ("" for none).
func ask(base, ns, name, token string) (answer, error) {
	h := originalRequest("/orders/42")
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	return askWith(base+"/authz/"+ns+"/"+name, h)
}

func askWith(url string, h http.Header) (answer, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return answer{}, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	start := time.Now()
	resp, err := httpClient.Do(req)
	if err != nil {
		return answer{latency: time.Since(start)}, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return answer{
		status:  resp.StatusCode,
		reason:  resp.Header.Get("X-Claimguard-Reason"),
		audit:   resp.Header.Get("X-Claimguard-Audit"),
		www:     resp.Header.Get("WWW-Authenticate"),
		subject: resp.Header.Get("X-Auth-Subject"),
		latency: time.Since(start),
	}, nil
}

// mustAsk is ask that fails the test on a transport error.
func mustAsk(t *testing.T, base, ns, name, token string) answer {
	t.Helper()
	a, err := ask(base, ns, name, token)
	if err != nil {
		t.Fatalf("forward-auth request to %s/%s: %v", ns, name, err)
	}
	return a
}

// statusOf returns the status of a GET, 0 when the server does not answer.
func statusOf(url string) int {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// bodyOf returns the status and body of a GET.
func bodyOf(url string) (int, string, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// metric sums the samples of the series called name whose labels include every pair of
// labels (k1, v1, k2, v2, ...) in a Prometheus text exposition. ok is false when no series
// matches.
func metric(text, name string, labels ...string) (sum float64, ok bool) {
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		var lbls map[string]string
		switch {
		case strings.HasPrefix(rest, "{"):
			end := strings.LastIndex(rest, "}")
			if end < 0 {
				continue
			}
			lbls = parseLabels(rest[1:end])
			rest = rest[end+1:]
		case strings.HasPrefix(rest, " "):
		default:
			continue // another metric whose name starts with name
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if lbls[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		sum, ok = sum+v, true
	}
	return sum, ok
}

// parseLabels parses `a="x",b="y"` (with \" and \\ escapes in values).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return out
		}
		key := strings.TrimSpace(strings.TrimPrefix(s[:eq], ","))
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		out[key] = val.String()
		s = s[min(i+1, len(s)):]
		s = strings.TrimPrefix(s, ",")
	}
	return out
}

// scrape reads a /metrics page.
func scrape(t *testing.T, url string) string {
	t.Helper()
	code, body, err := bodyOf(url)
	if err != nil || code != http.StatusOK {
		t.Fatalf("scrape %s: %d %v", url, code, err)
	}
	return body
}

// Policies of the scenarios.

const (
	audience = "orders-api"
	scope    = "orders:read"
)

// policyDoc renders a JWTPolicy document trusting idp() with the given jwks lines (already
// indented under "jwks:"), requiring scope orders:read and forwarding sub, plus extra spec
// lines.
func policyDoc(ns, name, jwks, extra string) string {
	return fmt.Sprintf(`apiVersion: auth.claimguard.dev/v1alpha1
kind: JWTPolicy
metadata: {name: %s, namespace: %s}
spec:
  issuers:
  - issuer: %s
    audiences: [%s]
    algorithms: [RS256, ES256]
    jwks:
      %s
  requiredClaims:
  - {claim: scope, operator: ContainsAny, values: [%q]}
  forwardClaims:
  - {claim: sub, header: X-Auth-Subject}
%s`, name, ns, idp().URL, audience, jwks, scope, extra)
}

// inlineKeys is the jwks line of the idp's public keys inline.
func inlineKeys() string { return "inline: '" + idp().PublicJWKS() + "'" }

// claimsFor returns a valid payload for sub: the idp's issuer, the audience, the scope, iat
// now and exp in an hour.
func claimsFor(sub string) map[string]any {
	c := idp().Claims(sub, time.Now())
	c["scope"] = "openid " + scope
	return c
}

// mint signs claims (modified by mod) with the idp's key for alg.
func mint(t testing.TB, alg string, sub string, mod func(map[string]any)) string {
	t.Helper()
	c := claimsFor(sub)
	if mod != nil {
		mod(c)
	}
	tok, err := idp().Token(alg, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// forger has its own keys under the idp's name and kids: its tokens fail the signature check.
var forger = sync.OnceValue(func() *authztest.Issuer {
	iss, err := authztest.NewIssuer(idp().URL)
	if err != nil {
		panic(err)
	}
	return iss
})

// tokenMix is one token of each outcome the scenarios send: allowed, expired, wrongly
// signed, failing the required claim, and no token at all.
type tokenMix struct {
	valid, expired, forged, noScope string
}

func newTokenMix(t testing.TB, alg string) tokenMix {
	t.Helper()
	forged, err := forger().Token(alg, claimsFor("mallory"))
	if err != nil {
		t.Fatal(err)
	}
	return tokenMix{
		valid: mint(t, alg, "alice", nil),
		expired: mint(t, alg, "alice", func(c map[string]any) {
			c["iat"], c["exp"] = time.Now().Add(-3*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix()
		}),
		forged:  forged,
		noScope: mint(t, alg, "bob", func(c map[string]any) { delete(c, "scope") }),
	}
}

// probes returns the traffic probes of the mix for policy ns/name: what each must get.
func (m tokenMix) probes(alg string) []probe {
	return []probe{
		{name: alg + " valid", token: m.valid, want: http.StatusOK},
		{name: alg + " expired", token: m.expired, want: http.StatusUnauthorized, reason: "token_expired"},
		{name: alg + " forged", token: m.forged, want: http.StatusUnauthorized, reason: "signature_invalid"},
		{name: alg + " no scope", token: m.noScope, want: http.StatusForbidden, reason: "claim_missing"},
		{name: "no token", want: http.StatusUnauthorized, reason: "token_missing"},
	}
}

// serveProc is a running `claimguard serve`.
type serveProc struct {
	*proc
	base string // http://127.0.0.1:port
	file string // the policy file
}

// startServe writes content as the policy file and starts `claimguard serve` on it with
// extra flags, waiting until it answers /healthz (not /readyz: some scenarios start it with
// keys that cannot load).
func startServe(t *testing.T, content string, flags ...string) *serveProc {
	t.Helper()
	dir := t.TempDir()
	file := filepath.Join(dir, "policies.yaml")
	testenv.WriteAtomic(t, file, content)
	addr := testenv.FreeAddr(t)
	args := append([]string{"serve", "--policy-file", file, "--listen", addr}, flags...)
	s := &serveProc{proc: startProc(t, "serve", args...), base: "http://" + addr, file: file}
	waitFor(t, 30*time.Second, "serve answers /healthz", func() error {
		if !s.running() {
			t.Fatalf("serve exited: %v", s.err)
		}
		if c := statusOf(s.base + "/healthz"); c != http.StatusOK {
			return fmt.Errorf("/healthz %d", c)
		}
		return nil
	})
	return s
}

// metrics scrapes the serve process's /metrics.
func (s *serveProc) metrics(t *testing.T) string { return scrape(t, s.base+"/metrics") }

// noSecretsLogged fails the test when a log holds one of the tokens or key sets.
func noSecretsLogged(t *testing.T, logs string, secrets ...string) {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		for _, s := range secrets {
			if len(s) > 20 && strings.Contains(line, s) {
				t.Errorf("a log line holds a token or key set: %.100s...", line)
			}
		}
	}
}

// ctx is the context of API calls in the scenarios.
func ctx() context.Context { return context.Background() }
