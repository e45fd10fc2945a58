package cli_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// explainFile writes a policy file with shop/orders (Enforce, required
// scope), shop/audit (Audit), shop/cookie (cookie source, public paths) and
// shop/broken (does not compile... as its own file, see below).
func explainFile(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "p.yaml")
	writePolicyFile(t, file, strings.Join([]string{
		policyYAML("shop", "orders", "  requiredClaims: [{claim: scope, operator: ContainsAny, values: [orders:read]}]\n"),
		policyYAML("shop", "audit", "  mode: Audit\n"),
		policyYAML("shop", "cookie", "  tokenSources: [{cookie: {name: access_token}}]\n  publicPaths: [/public/]\n"),
	}, "---\n"))
	return file
}

func withScope(c map[string]any) { c["scope"] = "orders:read" }

func TestExplain(t *testing.T) {
	file := explainFile(t)
	good := mint(t, "RS256", withScope)
	expired := mint(t, "ES256", func(c map[string]any) { withScope(c); c["exp"] = time.Now().Add(-time.Hour).Unix() })
	noScope := mint(t, "RS256", nil)
	cases := []struct {
		name      string
		args      []string
		code      int
		firstLine string // prefix
		contains  []string
	}{
		{"allow", []string{"--policy", "shop/orders", good}, 0, "ALLOW", []string{"ok   signature", "ok   claim[0]"}},
		{"expired", []string{"--policy", "shop/orders", expired}, 1, "DENY 401 token_expired: ", []string{"FAIL exp"}},
		{"claim fails", []string{"--policy", "shop/orders", noScope}, 1, "DENY 403 claim_", []string{"FAIL claim[0]"}},
		{"bad signature", []string{"--policy", "shop/orders", good[:len(good)-6] + "AAAAAA"}, 1, "DENY 401 signature_invalid", nil},
		{"garbage", []string{"--policy", "shop/orders", "abc"}, 1, "DENY 401 token_malformed", nil},
		{"audit mode says what Enforce would do", []string{"--policy", "shop/audit", expired}, 1, "DENY 401 token_expired", []string{"Audit mode", "X-Claimguard-Audit: token_expired"}},
		{"cookie source", []string{"--policy", "shop/cookie", good}, 0, "ALLOW", []string{"cookie"}},
		{"public path", []string{"--policy", "shop/cookie", "--path", "/public/a", good}, 0, "ALLOW (public path", nil},
		{"public path from X-Original-URL", []string{"--policy", "shop/cookie", "--header", "X-Original-URL: https://h/public/a", good}, 0, "ALLOW (public path", nil},
		{"extra header", []string{"--policy", "shop/orders", "--header", "X-Request-ID: 1", good}, 0, "ALLOW", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(append([]string{"explain", "--policy-file", file}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tc.code, errOut)
			}
			if errOut != "" {
				t.Errorf("stderr %q, want nothing", errOut)
			}
			first, _, _ := strings.Cut(out, "\n")
			if !strings.HasPrefix(first, tc.firstLine) {
				t.Errorf("first line %q, want %q...", first, tc.firstLine)
			}
			for _, c := range tc.contains {
				if !strings.Contains(out, c) {
					t.Errorf("output lacks %q:\n%s", c, out)
				}
			}
			for _, tok := range []string{good, expired, noScope} {
				sig := tok[strings.LastIndexByte(tok, '.')+1:]
				if strings.Contains(out, tok) || strings.Contains(out, sig) {
					t.Errorf("output holds a token or its signature:\n%s", out)
				}
			}
			if strings.Contains(out, testIssuer().PublicJWKS()[10:60]) {
				t.Error("output holds key material")
			}
		})
	}
}

func TestExplainJSON(t *testing.T) {
	file := explainFile(t)
	expired := mint(t, "RS256", func(c map[string]any) { withScope(c); c["exp"] = time.Now().Add(-time.Hour).Unix() })
	out, _, code := run("explain", "--policy-file", file, "--policy", "shop/audit", "-o", "json", expired)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	var doc struct {
		Policy, Mode, Outcome, Reason, Description string
		Status                                     int
		Steps                                      []struct {
			Name   string
			OK     bool
			Detail string
		}
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if doc.Policy != "shop/audit" || doc.Mode != "Audit" || doc.Outcome != "deny" || doc.Status != 401 || doc.Reason != "token_expired" || doc.Description == "" {
		t.Errorf("decision fields: %+v", doc)
	}
	failed := ""
	for _, s := range doc.Steps {
		if !s.OK {
			failed = s.Name
		}
	}
	if failed != "exp" {
		t.Errorf("failing step %q, want exp; steps %+v", failed, doc.Steps)
	}
	if strings.Contains(out, expired) {
		t.Error("JSON holds the token")
	}
}

// TestExplainStdin reads the token from stdin, trimming whitespace (run as a
// process: stdin is the real one).
func TestExplainStdin(t *testing.T) {
	file := explainFile(t)
	good := mint(t, "RS256", withScope)
	for _, input := range []string{good, "\n  " + good + " \n\n"} {
		cmd := exec.Command(binary, "explain", "--policy-file", file, "--policy", "shop/orders", "-")
		cmd.Stdin = strings.NewReader(input)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("explain -: %v; stderr %q", err, errOut.String())
		}
		if !strings.HasPrefix(out.String(), "ALLOW\n") {
			t.Errorf("output %q", out.String())
		}
	}
	cmd := exec.Command(binary, "explain", "--policy-file", file, "--policy", "shop/orders", "-")
	cmd.Stdin = strings.NewReader(" \n")
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(errOut.String(), "no token given") {
		t.Errorf("empty stdin: %v, stderr %q", err, errOut.String())
	}
}

func TestExplainUsageErrors(t *testing.T) {
	file := explainFile(t)
	good := mint(t, "RS256", withScope)
	broken := filepath.Join(t.TempDir(), "broken.yaml")
	writePolicyFile(t, broken, policyYAML("shop", "orders", "")+"---\n"+policyYAML("shop", "bad", "  requiredClaims: [{claim: 'a..b', operator: Exists}]\n"))
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"unknown policy", []string{"--policy-file", file, "--policy", "shop/nope", good}, "policy shop/nope is not in"},
		{"policy does not compile", []string{"--policy-file", broken, "--policy", "shop/bad", good}, "policy shop/bad does not compile: " + broken + ": document 2 (shop/bad): spec.requiredClaims[0].claim: "},
		{"no token", []string{"--policy-file", file, "--policy", "shop/orders"}, "no token given"},
		{"blank token", []string{"--policy-file", file, "--policy", "shop/orders", "  "}, "no token given"},
		{"two tokens", []string{"--policy-file", file, "--policy", "shop/orders", good, good}, "one token at most"},
		{"no policy flag", []string{"--policy-file", file, good}, "--policy NAMESPACE/NAME is required"},
		{"bad policy flag", []string{"--policy-file", file, "--policy", "orders", good}, "want NAMESPACE/NAME"},
		{"no file flag", []string{"--policy", "shop/orders", good}, "--policy-file is required"},
		{"missing file", []string{"--policy-file", file + ".missing", "--policy", "shop/orders", good}, "no such file"},
		{"bad output", []string{"--policy-file", file, "--policy", "shop/orders", "-o", "yaml", good}, `-o "yaml"`},
		{"bad header", []string{"--policy-file", file, "--policy", "shop/orders", "--header", "nocolon", good}, "--header"},
		{"header clashes with the token", []string{"--policy-file", file, "--policy", "shop/orders", "--header", "Authorization: Basic x", good}, "--header Authorization"},
		{"unknown flag", []string{"--policy-file", file, "--policy", "shop/orders", "--bogus", good}, "unknown flag: --bogus"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := run(append([]string{"explain"}, tc.args...)...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			if strings.Count(strings.TrimRight(errOut, "\n"), "\n") != 0 || !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q: want one line with %q", errOut, tc.want)
			}
			if strings.Contains(errOut, good) {
				t.Error("stderr holds the token")
			}
		})
	}
}
