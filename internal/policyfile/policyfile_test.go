package policyfile

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"

	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
	"github.com/claimguard/claimguard/internal/testenv"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

var issuer = sync.OnceValue(func() *authztest.Issuer {
	iss, err := authztest.NewIssuer("https://idp.example.com")
	if err != nil {
		panic(err)
	}
	return iss
})

// policyDoc is a valid JWTPolicy document with inline keys.
func policyDoc(ns, name string, extra string) string {
	meta := "name: " + name
	if ns != "" {
		meta += ", namespace: " + ns
	}
	return fmt.Sprintf(`apiVersion: auth.claimguard.dev/v1alpha1
kind: JWTPolicy
metadata: {%s}
spec:
  issuers:
  - issuer: %s
    jwks:
      inline: '%s'
%s`, meta, issuer().URL, issuer().PublicJWKS(), extra)
}

// hmacDoc is a policy whose HS256 key comes from secretRef hs/jwks.json.
func hmacDoc(ns, name string) string {
	return fmt.Sprintf(`apiVersion: auth.claimguard.dev/v1alpha1
kind: JWTPolicy
metadata: {name: %s, namespace: %s}
spec:
  issuers:
  - issuer: %s
    algorithms: [HS256]
    jwks:
      secretRef: {name: hs, key: jwks.json}
`, name, ns, issuer().URL)
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		data string
		keys []string
		errs []string
	}{
		{
			name: "several documents, empty ones ignored, namespace defaulted",
			data: "---\n# only a comment\n---\n" + policyDoc("shop", "a", "") + "---\n\n---\n" + policyDoc("", "b", ""),
			keys: []string{"shop/a", "default/b"},
		},
		{
			name: "JSON document",
			data: `{"apiVersion":"auth.claimguard.dev/v1alpha1","kind":"JWTPolicy","metadata":{"name":"j"},"spec":{"issuers":[]}}`,
			keys: []string{"default/j"},
		},
		{
			name: "unknown fields, each on its own line",
			data: policyDoc("shop", "a", "  bogus: 1\n  mode2: x\n"),
			errs: []string{"f.yaml: document 1 (shop/a): spec.bogus: unknown field", "f.yaml: document 1 (shop/a): spec.mode2: unknown field"},
		},
		{
			name: "nested unknown field",
			data: strings.Replace(policyDoc("shop", "a", ""), "    jwks:", "    jwsk: {}\n    jwks:", 1),
			errs: []string{"f.yaml: document 1 (shop/a): spec.issuers[0].jwsk: unknown field"},
		},
		{
			name: "other kinds are refused",
			data: policyDoc("shop", "a", "") + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: shop}\n",
			errs: []string{`f.yaml: document 2 (shop/s): kind "Secret" of apiVersion "v1" is not a JWTPolicy: only apiVersion: auth.claimguard.dev/v1alpha1, kind: JWTPolicy documents are read`},
		},
		{
			name: "wrong version",
			data: strings.Replace(policyDoc("shop", "a", ""), "v1alpha1", "v1", 1),
			errs: []string{`f.yaml: document 1 (shop/a): kind "JWTPolicy" of apiVersion "auth.claimguard.dev/v1" is not a JWTPolicy: only apiVersion: auth.claimguard.dev/v1alpha1, kind: JWTPolicy documents are read`},
		},
		{
			name: "duplicate namespace/name",
			data: policyDoc("", "a", "") + "---\n" + policyDoc("default", "a", ""),
			errs: []string{`f.yaml: document 2 (default/a): metadata.name: Duplicate value: "a" is already defined by document 1`},
		},
		{
			name: "missing name",
			data: strings.Replace(policyDoc("shop", "a", ""), "name: a, ", "", 1),
			errs: []string{"f.yaml: document 1: metadata.name: Required value"},
		},
		{
			name: "invalid name",
			data: policyDoc("shop", "Orders_API", ""),
			errs: []string{`f.yaml: document 1 (shop/Orders_API): metadata.name: Invalid value: "Orders_API": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')`},
		},
		{
			name: "wrong type",
			data: policyDoc("shop", "a", "  mode: 3\n"),
			errs: []string{"f.yaml: document 1 (shop/a): json: cannot unmarshal number into Go struct field JWTPolicySpec.spec.mode of type v1alpha1.PolicyMode"},
		},
		{
			name: "not YAML",
			data: policyDoc("shop", "a", "") + "---\nkey: [unclosed\n",
			errs: []string{"f.yaml: document 2: not valid YAML: yaml: line 1: did not find expected ',' or ']'"},
		},
		{
			name: "a list, not an object",
			data: "- a\n- b\n",
			errs: []string{"f.yaml: document 1: not an object: a document must be a JWTPolicy manifest"},
		},
		{
			name: "no policies at all",
			data: "# nothing\n---\n",
			errs: []string{"f.yaml: no JWTPolicy documents (apiVersion: auth.claimguard.dev/v1alpha1, kind: JWTPolicy)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Parse("f.yaml", []byte(tt.data))
			var gotErrs []string
			if err != nil {
				fe, ok := err.(*Error)
				if !ok {
					t.Fatalf("error is %T, want *Error", err)
				}
				gotErrs = fe.Lines
			}
			if diff := cmp.Diff(tt.errs, gotErrs); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			var keys []string
			for _, d := range docs {
				keys = append(keys, d.Key())
			}
			if diff := cmp.Diff(tt.keys, keys); diff != "" {
				t.Errorf("documents (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseKeepsDocumentNumbers(t *testing.T) {
	docs, err := Parse("f", []byte("---\n---\n"+policyDoc("a", "x1", "")+"---\n"+policyDoc("a", "y1", "")))
	if err != nil {
		t.Fatal(err)
	}
	if docs[0].Index != 2 || docs[1].Index != 3 {
		t.Errorf("indexes %d, %d; want 2, 3 (counting the empty document)", docs[0].Index, docs[1].Index)
	}
}

// TestLoadReportsCompileErrors: compile errors name file, document, policy
// and field, one line each, and never echo the offending value.
func TestLoadReportsCompileErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policies.yaml")
	bad := strings.Replace(policyDoc("shop", "bad", "  requiredClaims:\n  - {claim: sub, operator: Matches, values: ['(']}\n"), "inline: '", "uri: 'ftp://x' #", 1)
	testenv.WriteAtomic(t, file, policyDoc("shop", "good", "")+"---\n"+bad)
	_, err := Load(file, Options{})
	fe, ok := err.(*Error)
	if !ok {
		t.Fatalf("error %v (%T), want *Error", err, err)
	}
	if len(fe.Lines) != 2 {
		t.Fatalf("want 2 lines, got %q", fe.Lines)
	}
	for _, prefix := range []string{
		file + ": document 2 (shop/bad): spec.issuers[0].jwks.uri: ",
		file + ": document 2 (shop/bad): spec.requiredClaims[0].values[0]: ",
	} {
		found := false
		for _, l := range fe.Lines {
			found = found || strings.HasPrefix(l, prefix)
		}
		if !found {
			t.Errorf("no line starts with %q: %q", prefix, fe.Lines)
		}
	}
	for _, l := range fe.Lines {
		if strings.Contains(l, "\n") {
			t.Errorf("line holds a newline: %q", l)
		}
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml"), Options{}); err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "missing.yaml")+": ") {
		t.Errorf("missing file: %v", err)
	}
}

func decide(p *policy.Policy, tok string) policy.Decision {
	return p.Decide(&policy.Request{Header: http.Header{"Authorization": {"Bearer " + tok}}})
}

// TestSecretDir: secretRef resolves to DIR/NS/name/key; an absent file is
// not a compile error but keys_unavailable; a rotated secret changes the
// revision, so a cached verdict for the old secret is not reused.
func TestSecretDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policies.yaml")
	secrets := filepath.Join(dir, "secrets")
	testenv.WriteAtomic(t, file, hmacDoc("shop", "hs"))
	cache := policy.NewCache(100)
	opts := Options{SecretDir: secrets, Cache: cache}
	tok := issuer().MustToken("HS256", issuer().Claims("alice", time.Now()))

	c, err := Load(file, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c.Policies[0].KeysReady() {
		t.Error("KeysReady with the secret file absent")
	}
	if d := decide(c.Policies[0], tok); d.Reason != policy.KeysUnavailable {
		t.Errorf("absent secret: reason %q, want keys_unavailable", d.Reason)
	}
	secretFile := filepath.Join(secrets, "shop", "hs", "jwks.json")
	if diff := cmp.Diff([]string{secretFile}, c.SecretFiles); diff != "" {
		t.Errorf("SecretFiles (-want +got):\n%s", diff)
	}

	testenv.WriteAtomic(t, secretFile, issuer().SecretJWKS())
	c2, err := Load(file, opts)
	if err != nil {
		t.Fatal(err)
	}
	if c2.Digest == c.Digest {
		t.Error("digest unchanged after the secret appeared")
	}
	if d := decide(c2.Policies[0], tok); !d.Allowed {
		t.Fatalf("with the secret: %+v", d)
	}
	decide(c2.Policies[0], tok) // cached now

	other, err := authztest.NewIssuer(issuer().URL)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteAtomic(t, secretFile, other.SecretJWKS())
	c3, err := Load(file, opts)
	if err != nil {
		t.Fatal(err)
	}
	if d := decide(c3.Policies[0], tok); d.Reason != policy.SignatureInvalid {
		t.Errorf("after rotating the secret the old token must fail: %+v", d)
	}
	if sum, err := Digest(file, c3.SecretFiles); err != nil || sum != c3.Digest {
		t.Errorf("Digest of unchanged inputs differs from the compile's: %v", err)
	}
}

// TestReloadReusesUnchangedPolicies: a reload compiles only the policies whose document or
// secret changed; the others are the very same compiled policies (their remote key sets are
// not fetched again and their cached tokens stay valid).
func TestReloadReusesUnchangedPolicies(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policies.yaml")
	secrets := filepath.Join(dir, "secrets")
	secretFile := filepath.Join(secrets, "shop", "hs", "jwks.json")
	testenv.WriteAtomic(t, secretFile, issuer().SecretJWKS())
	testenv.WriteAtomic(t, file, policyDoc("shop", "a", "")+"---\n"+policyDoc("shop", "b", "")+"---\n"+hmacDoc("shop", "hs"))
	opts := Options{SecretDir: secrets}
	byName := func(c *Compiled) map[string]*policy.Policy {
		m := map[string]*policy.Policy{}
		for _, p := range c.Policies {
			m[p.Name()] = p
		}
		return m
	}
	first, err := Load(file, opts)
	if err != nil {
		t.Fatal(err)
	}
	before := byName(first)

	// b edited, a and hs untouched.
	testenv.WriteAtomic(t, file, policyDoc("shop", "a", "")+"---\n"+policyDoc("shop", "b", "  mode: Audit\n")+"---\n"+hmacDoc("shop", "hs"))
	second, err := load(file, opts, first)
	if err != nil {
		t.Fatal(err)
	}
	after := byName(second)
	if after["a"] != before["a"] || after["hs"] != before["hs"] {
		t.Error("an unchanged policy was compiled again")
	}
	if after["b"] == before["b"] || after["b"].Mode() != "Audit" {
		t.Errorf("the edited policy was not recompiled: mode %s", after["b"].Mode())
	}

	// The secret of hs rotated: hs recompiled, a and b reused.
	other, err := authztest.NewIssuer(issuer().URL)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WriteAtomic(t, secretFile, other.SecretJWKS())
	third, err := load(file, opts, second)
	if err != nil {
		t.Fatal(err)
	}
	rotated := byName(third)
	if rotated["hs"] == after["hs"] {
		t.Error("a policy whose secret rotated was reused")
	}
	if rotated["a"] != after["a"] || rotated["b"] != after["b"] {
		t.Error("a policy without a change was compiled again after another's secret rotated")
	}
	tok := other.MustToken("HS256", other.Claims("alice", time.Now()))
	if d := decide(rotated["hs"], tok); !d.Allowed {
		t.Errorf("the rotated key does not verify: %+v", d)
	}

	// A document whose namespace changes is another policy, even with the same spec.
	testenv.WriteAtomic(t, file, policyDoc("other", "a", "")+"---\n"+policyDoc("shop", "b", "  mode: Audit\n")+"---\n"+hmacDoc("shop", "hs"))
	moved, err := load(file, opts, third)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range moved.Policies {
		if p.Name() == "a" && (p == rotated["a"] || p.Namespace() != "other") {
			t.Errorf("policy a moved to namespace other is %s/%s, reused %v", p.Namespace(), p.Name(), p == rotated["a"])
		}
	}
}

func TestSecretRefNamesCannotEscape(t *testing.T) {
	r := &secretReader{dir: t.TempDir(), files: map[string][]byte{}}
	for _, ref := range [][3]string{{"shop", "..", "k"}, {"shop", "a", "../k"}, {"shop", "a/b", "k"}, {"..", "a", "k"}, {"shop", "a", ".."}} {
		if _, err := r.read(ref[0], ref[1], ref[2]); err == nil {
			t.Errorf("read(%q) succeeded", ref)
		}
	}
	if _, err := (&secretReader{files: map[string][]byte{}}).read("shop", "a", "k"); err == nil || !strings.Contains(err.Error(), "--secret-dir") {
		t.Errorf("without a secret dir: %v", err)
	}
}

type recorder struct {
	mu    sync.Mutex
	snaps []*store.Snapshot
}

func (r *recorder) Publish(s *store.Snapshot) {
	r.mu.Lock()
	r.snaps = append(r.snaps, s)
	r.mu.Unlock()
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.snaps)
}

func (r *recorder) last() *store.Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.snaps[len(r.snaps)-1]
}

// runWatcher loads w's file and runs w until the test ends, failing the test when either
// fails.
func runWatcher(t *testing.T, w *Watcher) {
	t.Helper()
	if err := w.Load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatcher: edits are published, an invalid edit keeps the last good
// snapshot (logged once, reported to OnReload), a rotated secret file is
// picked up, and an unchanged rewrite publishes nothing.
func TestWatcher(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policies.yaml")
	secrets := filepath.Join(dir, "secrets")
	testenv.WriteAtomic(t, file, policyDoc("shop", "a", "")+"---\n"+hmacDoc("shop", "hs"))
	testenv.WriteAtomic(t, filepath.Join(secrets, "shop", "hs", "jwks.json"), issuer().SecretJWKS())

	var mu sync.Mutex
	var logLines []string
	var reloads []error
	rec := &recorder{}
	w := &Watcher{
		File:      file,
		Options:   Options{SecretDir: secrets},
		Publisher: rec,
		Log: funcr.New(func(prefix, args string) {
			mu.Lock()
			logLines = append(logLines, args)
			mu.Unlock()
		}, funcr.Options{}),
		OnReload: func(err error) {
			mu.Lock()
			reloads = append(reloads, err)
			mu.Unlock()
		},
		Debounce: 50 * time.Millisecond,
		Poll:     200 * time.Millisecond,
	}
	runWatcher(t, w)

	testenv.WriteAtomic(t, file, policyDoc("shop", "a", "")+"---\n"+hmacDoc("shop", "hs")+"---\n"+policyDoc("shop", "b", ""))
	waitFor(t, "the edit to be published", func() bool { return rec.count() == 2 })
	if rec.last().Get("shop", "b") == nil {
		t.Fatal("new policy shop/b not in the snapshot")
	}

	testenv.WriteAtomic(t, file, policyDoc("shop", "a", "  bogus: true\n"))
	waitFor(t, "the invalid edit to be reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(reloads) == 2
	})
	time.Sleep(500 * time.Millisecond) // several polls: logged once only
	mu.Lock()
	if reloads[1] == nil || !strings.Contains(reloads[1].Error(), "spec.bogus: unknown field") {
		t.Errorf("OnReload got %v", reloads[1])
	}
	n := 0
	for _, l := range logLines {
		if strings.Contains(l, "spec.bogus: unknown field") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the invalid edit was logged %d times, want once:\n%s", n, strings.Join(logLines, "\n"))
	}
	mu.Unlock()
	if rec.count() != 2 || rec.last().Get("shop", "b") == nil {
		t.Fatal("an invalid edit replaced the last good snapshot")
	}

	testenv.WriteAtomic(t, file, policyDoc("shop", "a", "")+"---\n"+hmacDoc("shop", "hs"))
	waitFor(t, "the fixed file to be published", func() bool { return rec.count() == 3 })
	if rec.last().Get("shop", "b") != nil || rec.last().Get("shop", "a") == nil {
		t.Error("fixed file not in force")
	}
	tok := issuer().MustToken("HS256", issuer().Claims("alice", time.Now()))
	if d := decide(rec.last().Get("shop", "hs"), tok); !d.Allowed {
		t.Fatalf("HS256 token: %+v", d)
	}

	other, _ := authztest.NewIssuer(issuer().URL)
	testenv.WriteAtomic(t, filepath.Join(secrets, "shop", "hs", "jwks.json"), other.SecretJWKS())
	waitFor(t, "the rotated secret to be published", func() bool { return rec.count() == 4 })
	if d := decide(rec.last().Get("shop", "hs"), tok); d.Allowed {
		t.Error("token of the old secret still allowed after rotation")
	}

	// Same content written again: nothing to publish.
	content, _ := os.ReadFile(file)
	testenv.WriteAtomic(t, file, string(content))
	time.Sleep(500 * time.Millisecond)
	if rec.count() != 4 {
		t.Errorf("an unchanged rewrite published a snapshot (%d)", rec.count())
	}
}

// TestReadBounded: a file over MaxFileBytes is refused (a regular one before any of it is
// read), one of exactly MaxFileBytes is read whole, and a pipe that streams past the limit is
// refused after MaxFileBytes+1 bytes.
func TestReadBounded(t *testing.T) {
	dir := t.TempDir()
	sized := func(name string, size int64) string {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil { // sparse: costs no disk
			t.Fatal(err)
		}
		return path
	}
	if _, err := readBounded(sized("over", MaxFileBytes+1)); err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Errorf("a file one byte over the limit: %v", err)
	}
	data, err := readBounded(sized("limit", MaxFileBytes))
	if err != nil || len(data) != MaxFileBytes {
		t.Errorf("a file of exactly the limit: %d bytes, %v", len(data), err)
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		chunk := make([]byte, 1<<20)
		for range MaxFileBytes>>20 + 2 {
			if _, err := f.Write(chunk); err != nil {
				return // the reader stopped at the limit
			}
		}
	}()
	if _, err := readBounded(fifo); err == nil || !strings.Contains(err.Error(), "larger than 16 MiB") {
		t.Errorf("a pipe streaming past the limit: %v", err)
	}
}
