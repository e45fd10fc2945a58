package docs

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/policyfile"
	"github.com/claimguard/claimguard/webhook/authz"
)

// The examples run from the repository root against these files, the way a
// reader who cloned the repository would run them.
const (
	examplePolicies = "docs/examples/policies.yaml"
	exampleSecrets  = "docs/examples/secrets"
	// docServeAddr is the address the docs tell readers to start
	// `claimguard serve` on; curl examples use it and the test substitutes
	// the address of its own server.
	docServeAddr = "127.0.0.1:8443"
)

var (
	repoRoot string // absolute path of the repository root
	binDir   string // holds the claimguard binary built for the test
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "claimguard-docs-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	// One build for every example: the binary users get, not a test double.
	build := exec.Command("go", "build", "-o", filepath.Join(binDir, "claimguard"), ".")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// ---- Markdown parsing -------------------------------------------------------

// docFiles returns every Markdown file under docs/, relative to the
// repository root, sorted.
func docFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(filepath.Join(repoRoot, "docs"), func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(path, ".md") {
			rel, _ := filepath.Rel(repoRoot, path)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	return files
}

// block is one fenced code block of a Markdown file.
type block struct {
	file  string
	line  int // line of the opening fence, 1-based
	info  string
	lines []string
}

// fencedBlocks returns the fenced code blocks of a Markdown file.
func fencedBlocks(t *testing.T, file string) []block {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	var (
		out    []block
		cur    *block
		fence  string
		indent string // of the opening fence, removed from the block's lines
	)
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimLeft(line, " ")
		switch {
		case cur == nil && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")):
			fence, indent = trimmed[:3], line[:len(line)-len(trimmed)]
			cur = &block{file: file, line: i + 1, info: strings.TrimSpace(trimmed[3:])}
		case cur != nil && strings.HasPrefix(trimmed, fence) && strings.TrimSpace(trimmed[3:]) == "":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, strings.TrimPrefix(line, indent))
		}
	}
	if cur != nil {
		t.Fatalf("%s:%d: code block is never closed", file, cur.line)
	}
	return out
}

// example is one command of a console block and the output the docs show.
type example struct {
	file    string
	line    int
	command string
	want    []string
}

// notRunnable are pages written by other parts of the project whose console
// blocks are illustrations (placeholders such as "$TOKEN", elided lines), not
// runnable examples. They are still checked for links and metric names. A
// page that switches to the files of docs/examples/ should leave this list.
var notRunnable = map[string]bool{
	"docs/benchmarks.md":   true,
	"docs/controller.md":   true,
	"docs/forward-auth.md": true,
}

// examples returns the commands of the console blocks of every doc: blocks
// whose first line is "$ claimguard explain ..." or "$ curl ...". A block may
// hold several commands, each starting with "$ "; a command line ending in
// "\" continues on the next line.
func examples(t *testing.T) []example {
	t.Helper()
	var out []example
	for _, f := range docFiles(t) {
		if notRunnable[f] {
			continue
		}
		for _, b := range fencedBlocks(t, f) {
			if len(b.lines) == 0 || !isTestedCommand(b.lines[0]) {
				continue
			}
			var cur *example
			for i := 0; i < len(b.lines); i++ {
				l := b.lines[i]
				if cmd, ok := strings.CutPrefix(l, "$ "); ok {
					if cur != nil {
						out = append(out, *cur)
					}
					cur = &example{file: f, line: b.line + 1 + i}
					for strings.HasSuffix(cmd, `\`) && i+1 < len(b.lines) {
						i++
						cmd = strings.TrimSuffix(cmd, `\`) + " " + strings.TrimSpace(b.lines[i])
					}
					cur.command = cmd
					continue
				}
				cur.want = append(cur.want, l)
			}
			out = append(out, *cur)
		}
	}
	return out
}

func isTestedCommand(line string) bool {
	return strings.HasPrefix(line, "$ claimguard explain ") || strings.HasPrefix(line, "$ curl ")
}

// ---- normalisation -----------------------------------------------------------

var (
	// nowRE matches the current time in explain's exp/nbf/iat lines
	// ("now 1796309988.2946746 (2026-12-03T14:59:48Z)"), the one part of
	// the output that changes from run to run. docs/README.md says so.
	nowRE = regexp.MustCompile(`now -?[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)? \([0-9TZ:-]+\)`)
	// dateRE matches the Date header of an HTTP answer.
	dateRE = regexp.MustCompile(`^Date: .*$`)
)

// normalize trims trailing whitespace (curl -i prints CRLF), replaces the
// documented run-dependent values and drops trailing blank lines.
func normalize(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		l = strings.TrimRight(l, " \t\r")
		l = nowRE.ReplaceAllString(l, "now <now>")
		l = dateRE.ReplaceAllString(l, "Date: <date>")
		out = append(out, l)
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// ---- running the examples -----------------------------------------------------

// serveOnce starts `claimguard serve` on the example policies for the curl
// examples, once per test binary, with the flags docs/guides/standalone.md
// shows (on a free port instead of 8443).
var serveOnce = sync.OnceValues(func() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(filepath.Join(binDir, "claimguard"), "serve",
		"--policy-file", examplePolicies, "--secret-dir", exampleSecrets, "--listen", addr)
	cmd.Dir = repoRoot
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		return "", err
	}
	serveCmd = cmd
	// Not /readyz: it stays 503 while any policy's keys are unavailable,
	// and docs/reports exists to show exactly that. A 401 from a policy
	// (token_missing) proves the policies are published.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/authz/docs/orders")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return addr, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopServe() // so that its output is complete and no longer written
	return "", fmt.Errorf("claimguard serve on %s did not answer:\n%s", addr, logs.String())
})

var serveCmd *exec.Cmd

func stopServe() {
	if serveCmd != nil && serveCmd.Process != nil {
		_ = serveCmd.Process.Kill()
		_ = serveCmd.Wait()
		serveCmd = nil
	}
}

// runExample runs one documented command with bash from the repository root,
// with the test's claimguard first on PATH, and returns its combined output
// lines and exit code.
func runExample(t *testing.T, command string) ([]string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", command)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run %q: %v", command, err)
	}
	return strings.Split(out.String(), "\n"), code
}

// simpleExplain matches an explain command whose exit code is the
// command's own: no pipe, no list, no redirection of stdout.
var simpleExplain = regexp.MustCompile(`^claimguard explain [^|;&>]*$`)

// wantExitCode is the exit code explain's first output line implies: 0 for
// ALLOW, 1 for DENY, 2 for an error line.
func wantExitCode(first string) (int, bool) {
	switch {
	case strings.HasPrefix(first, "ALLOW"):
		return 0, true
	case strings.HasPrefix(first, "DENY "):
		return 1, true
	case strings.HasPrefix(first, "error: "):
		return 2, true
	}
	return 0, false
}

func TestExamples(t *testing.T) {
	t.Cleanup(stopServe)
	exs := examples(t)
	if len(exs) < 20 {
		t.Fatalf("found %d console examples in docs/; the parser is probably broken", len(exs))
	}
	for _, ex := range exs {
		t.Run(fmt.Sprintf("%s:%d", ex.file, ex.line), func(t *testing.T) {
			command := ex.command
			if strings.HasPrefix(command, "curl ") {
				if _, err := exec.LookPath("curl"); err != nil {
					t.Fatal("the curl examples need curl on PATH (Debian: apt-get install curl)")
				}
				if !strings.Contains(command, docServeAddr) {
					t.Fatalf("a curl example must call the documented server at %s: %s", docServeAddr, command)
				}
				addr, err := serveOnce()
				if err != nil {
					t.Fatal(err)
				}
				command = strings.ReplaceAll(command, docServeAddr, addr)
			}
			got, code := runExample(t, command)
			want := normalize(ex.want)
			if diff := cmp.Diff(want, normalize(got)); diff != "" {
				t.Errorf("output of\n  $ %s\ndiffers from the docs (-docs +actual):\n%s", ex.command, diff)
			}
			if simpleExplain.MatchString(ex.command) && len(want) > 0 {
				wantCode, ok := wantExitCode(want[0])
				if !ok {
					t.Errorf("first line %q is neither ALLOW, DENY nor error:", want[0])
				} else if code != wantCode {
					t.Errorf("exit code %d, want %d for %q", code, wantCode, want[0])
				}
			}
		})
	}
}

// TestEveryReasonIsShown requires the troubleshooting guide to show every
// reason code in the output of a tested example, so a new code cannot ship
// without its section.
func TestEveryReasonIsShown(t *testing.T) {
	var shown strings.Builder
	for _, ex := range examples(t) {
		if ex.file == "docs/troubleshooting.md" {
			shown.WriteString(strings.Join(ex.want, "\n"))
			shown.WriteByte('\n')
		}
	}
	out := shown.String()
	for _, r := range policy.AllReasons() {
		explainLine := regexp.MustCompile(`(?m)^DENY [0-9]{3} ` + string(r) + `\b`)
		header := "X-Claimguard-Reason: " + string(r) + "\n"
		if !explainLine.MatchString(out) && !strings.Contains(out, header) {
			t.Errorf("docs/troubleshooting.md shows no tested example that ends in %s", r)
		}
	}
}

// ---- links --------------------------------------------------------------------

var (
	linkRE    = regexp.MustCompile(`\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	headingRE = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
)

// anchors returns the GitHub anchors of a Markdown file's headings.
func anchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(strings.TrimLeft(line, " "), "```") {
			inFence = !inFence
			continue
		}
		m := headingRE.FindStringSubmatch(line)
		if inFence || m == nil {
			continue
		}
		slug := githubSlug(m[1])
		if n := seen[slug]; n > 0 {
			out[fmt.Sprintf("%s-%d", slug, n)] = true
		} else {
			out[slug] = true
		}
		seen[slug]++
	}
	return out
}

// githubSlug is GitHub's heading anchor: lower case, markup and punctuation
// other than "-" and "_" dropped, spaces turned into "-".
func githubSlug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 0x7f:
			b.WriteRune(r)
		}
	}
	return b.String()
}

func TestRelativeLinks(t *testing.T) {
	checked := 0
	for _, f := range docFiles(t) {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		// Links inside code blocks are code, not links.
		var text strings.Builder
		inFence := false
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(strings.TrimLeft(line, " "), "```") {
				inFence = !inFence
				continue
			}
			if !inFence {
				text.WriteString(line)
				text.WriteByte('\n')
			}
		}
		for _, m := range linkRE.FindAllStringSubmatch(text.String(), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			path, frag, _ := strings.Cut(target, "#")
			full := filepath.Join(repoRoot, f)
			if path != "" {
				full = filepath.Join(filepath.Dir(full), filepath.FromSlash(path))
			}
			if !strings.HasPrefix(full, repoRoot+string(filepath.Separator)) {
				t.Errorf("%s: link %s leaves the repository", f, target)
				continue
			}
			st, err := os.Stat(full)
			if err != nil {
				t.Errorf("%s: link %s: %v", f, target, err)
				continue
			}
			if frag != "" && !st.IsDir() && strings.HasSuffix(full, ".md") && !anchors(t, full)[frag] {
				t.Errorf("%s: link %s: no heading with anchor #%s", f, target, frag)
			}
		}
	}
	if checked < 20 {
		t.Fatalf("checked only %d relative links; the link parser is probably broken", checked)
	}
}

// ---- policies ------------------------------------------------------------------

// topLevelPolicy matches a YAML document of kind JWTPolicy (and not, say, an
// ownerReference to one).
var topLevelPolicy = regexp.MustCompile(`(?m)^kind: JWTPolicy\s*$`)

// TestPolicyExamplesCompile compiles every JWTPolicy shown in a yaml block of
// the docs with the same code as the server, so a recipe cannot hold a field
// that does not exist or a value the server refuses. Remote key sets are
// syntax-checked, not fetched.
func TestPolicyExamplesCompile(t *testing.T) {
	n := 0
	for _, f := range docFiles(t) {
		for _, b := range fencedBlocks(t, f) {
			text := strings.Join(b.lines, "\n")
			if b.info != "yaml" || !topLevelPolicy.MatchString(text) {
				continue
			}
			n++
			name := fmt.Sprintf("%s:%d", f, b.line)
			// Other manifests of the block (Secrets, Ingresses) are not
			// policies; the policy file loader would refuse them.
			var keep []string
			for _, d := range strings.Split(text, "\n---\n") {
				if topLevelPolicy.MatchString(d) {
					keep = append(keep, d)
				}
			}
			docs, err := policyfile.Parse(name, []byte(strings.Join(keep, "\n---\n")))
			if err != nil {
				t.Errorf("%v", err)
				continue
			}
			if _, err := policyfile.Compile(name, docs, policyfile.Options{}); err != nil {
				t.Errorf("%v", err)
			}
		}
	}
	if n < 5 {
		t.Fatalf("found %d JWTPolicy examples in docs/; expected the issuer recipes at least", n)
	}
}

func TestExamplePolicyFileCompiles(t *testing.T) {
	c, err := policyfile.Load(filepath.Join(repoRoot, examplePolicies), policyfile.Options{SecretDir: filepath.Join(repoRoot, exampleSecrets)})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Policies) < 3 {
		t.Errorf("%d policies in %s", len(c.Policies), examplePolicies)
	}
}

// ---- example keys and tokens ------------------------------------------------------

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Crv string `json:"crv"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
	D   string `json:"d"`
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, path))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// TestExampleKeysAgree checks that the public keys in the policy file are the
// public halves of the published example private keys, so the generator and
// the policy file cannot drift apart.
func TestExampleKeysAgree(t *testing.T) {
	public := map[string]jwk{}
	for _, file := range []string{"docs/examples/keys/example-es256.jwk.json", "docs/examples/keys/example-rs256.jwk.json"} {
		var k jwk
		readJSON(t, file, &k)
		if k.D == "" {
			t.Errorf("%s holds no private key", file)
		}
		k.D = ""
		public[k.Kid] = k
	}
	var set struct{ Keys []jwk }
	readJSON(t, "docs/examples/keys/public-jwks.json", &set)
	inline := map[string]jwk{}
	for _, k := range set.Keys {
		if diff := cmp.Diff(public[k.Kid], k); diff != "" {
			t.Errorf("public-jwks.json key %q is not the public half of its private key (-private +public):\n%s", k.Kid, diff)
		}
	}
	docs, err := policyfile.ReadFile(filepath.Join(repoRoot, examplePolicies))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs {
		for _, is := range d.Policy.Spec.Issuers {
			if is.JWKS.Inline == "" {
				continue
			}
			var s struct{ Keys []jwk }
			if err := json.Unmarshal([]byte(is.JWKS.Inline), &s); err != nil {
				t.Fatalf("%s: inline JWKS: %v", d.Key(), err)
			}
			for _, k := range s.Keys {
				inline[k.Kid] = k
				if diff := cmp.Diff(public[k.Kid], k); diff != "" {
					t.Errorf("%s: inline key %q is not an example public key (-example +inline):\n%s", d.Key(), k.Kid, diff)
				}
			}
		}
	}
	for kid := range public {
		if _, ok := inline[kid]; !ok {
			t.Errorf("example key %q is used by no policy in %s", kid, examplePolicies)
		}
	}
}

// TestTokensComeFromGenerator runs the generator into a scratch directory
// with the committed keys and compares the tokens with the committed ones:
// headers and payloads must be equal (ECDSA signatures are randomised, so
// signatures are not compared), and no token may exist on one side only.
func TestTokensComeFromGenerator(t *testing.T) {
	scratch := t.TempDir()
	for _, src := range []string{"docs/examples/keys", "docs/examples/secrets"} {
		if err := os.CopyFS(filepath.Join(scratch, filepath.Base(src)), os.DirFS(filepath.Join(repoRoot, src))); err != nil {
			t.Fatal(err)
		}
	}
	gen := exec.Command("go", "run", "./docs/examples/gen", "-dir", scratch)
	gen.Dir = repoRoot
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("go run ./docs/examples/gen: %v\n%s", err, out)
	}
	committed := tokenFiles(t, filepath.Join(repoRoot, "docs/examples/tokens"))
	fresh := tokenFiles(t, filepath.Join(scratch, "tokens"))
	if diff := cmp.Diff(slices.Sorted(maps.Keys(committed)), slices.Sorted(maps.Keys(fresh))); diff != "" {
		t.Fatalf("token files differ from the generator's (-committed +generated):\n%s\nrun: go run ./docs/examples/gen", diff)
	}
	for name, tok := range committed {
		if diff := cmp.Diff(unsigned(tok), unsigned(fresh[name])); diff != "" {
			t.Errorf("%s differs from the generator's (-committed +generated):\n%s\nrun: go run ./docs/examples/gen", name, diff)
		}
	}
	// The generator keeps existing keys: the scratch keys must be unchanged.
	for _, f := range []string{"keys/example-es256.jwk.json", "keys/example-rs256.jwk.json", "keys/public-jwks.json", "secrets/docs/billing-hmac/jwks.json"} {
		a, _ := os.ReadFile(filepath.Join(repoRoot, "docs/examples", f))
		b, _ := os.ReadFile(filepath.Join(scratch, f))
		if !bytes.Equal(a, b) {
			t.Errorf("the generator changed %s", f)
		}
	}
}

func tokenFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = strings.TrimSpace(string(data))
	}
	return out
}

// unsigned drops the signature segment of a compact JWS (the third part).
func unsigned(tok string) string {
	parts := strings.SplitN(tok, ".", 3)
	if len(parts) == 3 {
		parts = parts[:2]
	}
	return strings.Join(parts, ".")
}

// ---- metrics ----------------------------------------------------------------------

// descRecorder is a prometheus.Registerer that only records the names of
// the metrics registered with it.
type descRecorder struct{ names []string }

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			r.names = append(r.names, m[1])
		}
	}
	return nil
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		_ = r.Register(c)
	}
}

func (r *descRecorder) Unregister(prometheus.Collector) bool { return false }

// TestMetricsReference requires docs/metrics.md to document exactly the
// claimguard_* metrics that the forward-auth server registers.
func TestMetricsReference(t *testing.T) {
	rec := &descRecorder{}
	if _, err := authz.NewMetrics(rec); err != nil {
		t.Fatal(err)
	}
	registered := slices.Sorted(slices.Values(rec.names))
	registered = slices.Compact(registered)

	data, err := os.ReadFile(filepath.Join(repoRoot, "docs/metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	// A metric is documented by a heading or table row that starts with it
	// in backquotes: | `claimguard_x` | or ### `claimguard_x`.
	docRE := regexp.MustCompile("(?m)^(?:\\| |#+ )`(claimguard_[a-z_]+)`")
	var documented []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if m := docRE.FindStringSubmatch(sc.Text()); m != nil {
			documented = append(documented, m[1])
		}
	}
	documented = slices.Compact(slices.Sorted(slices.Values(documented)))
	if diff := cmp.Diff(registered, documented); diff != "" {
		t.Errorf("docs/metrics.md does not list the registered metrics (-registered +documented):\n%s", diff)
	}
	// Every claimguard_* name mentioned anywhere in the docs must exist.
	anyRE := regexp.MustCompile(`claimguard_(?:authz|keys|cache|snapshot|policy)_[a-z_]*[a-z]`)
	for _, f := range docFiles(t) {
		data, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range anyRE.FindAllString(string(data), -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
			if !slices.Contains(registered, base) {
				t.Errorf("%s mentions %s, which claimguard does not export", f, name)
			}
		}
	}
}
