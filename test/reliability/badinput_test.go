package reliability

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/claimguard/claimguard/internal/policy"
)

// nested returns a JSON payload whose claim "deep" nests depth arrays.
func nested(depth int) map[string]any {
	var v any = "bottom"
	for range depth {
		v = []any{v}
	}
	c := claimsFor("deep")
	c["deep"] = v
	return c
}

// manyClaims returns a valid payload with n extra claims c00000....
func manyClaims(n int) map[string]any {
	c := claimsFor("many")
	for i := range n {
		c[fmt.Sprintf("c%05d", i)] = i
	}
	return c
}

// TestServeBadInput sends serve what a hostile or broken client can: header blocks over the
// server's limit, tokens over the cap, deeply nested and huge payloads, repeated credentials.
// Each gets its contract answer at once, and serve keeps answering normally afterwards.
func TestServeBadInput(t *testing.T) {
	t.Parallel()
	s := startServe(t, policyDoc("shop", "orders", inlineKeys(), "  tokenSources:\n  - header: {name: Authorization, prefix: \"Bearer \"}\n  - cookie: {name: access_token}\n"))
	waitServeReady(t, s)
	mix := newTokenMix(t, "ES256")
	deep := mint(t, "ES256", "deep", func(c map[string]any) {
		for k, v := range nested(2000) {
			c[k] = v
		}
	})
	huge := mint(t, "ES256", "many", func(c map[string]any) {
		for k, v := range manyClaims(10000) {
			c[k] = v
		}
	})
	if len(deep) > 8192 {
		t.Fatalf("the nested token is %d bytes; it must fit the cap to reach the parser", len(deep))
	}
	bearer := func(tok string) http.Header {
		h := originalRequest("/orders/42")
		h.Set("Authorization", "Bearer "+tok)
		return h
	}
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
		reason string
	}{
		{"header block over 32 KiB", func() http.Header {
			h := bearer(mix.valid)
			h.Set("X-Padding", strings.Repeat("a", 40<<10))
			return h
		}(), http.StatusRequestHeaderFieldsTooLarge, ""},
		{"token over the 8 KiB cap", bearer(mint(t, "ES256", "big", func(c map[string]any) { c["pad"] = strings.Repeat("x", 9000) })),
			http.StatusUnauthorized, "token_too_large"},
		{"10,000 claims (180 KiB): a header block over the limit", bearer(huge), http.StatusRequestHeaderFieldsTooLarge, ""},
		{"claims nested 2,000 deep", bearer(deep), http.StatusUnauthorized, "token_malformed"},
		{"two Authorization headers", func() http.Header {
			h := originalRequest("/orders/42")
			h["Authorization"] = []string{"Bearer " + mix.valid, "Bearer " + mix.valid}
			return h
		}(), http.StatusUnauthorized, "token_malformed"},
		{"1,000 cookies with the token's name", func() http.Header {
			h := originalRequest("/orders/42")
			h.Set("Cookie", strings.Repeat("access_token=x; ", 1000))
			return h
		}(), http.StatusUnauthorized, "token_malformed"},
		{"a token of 8 KiB of dots", bearer(strings.Repeat(".", 8000)), http.StatusUnauthorized, "token_malformed"},
		{"a token of 8 KiB of invalid base64", bearer(strings.Repeat("!", 2000) + "." + strings.Repeat("!", 2000) + "." + strings.Repeat("!", 2000)),
			http.StatusUnauthorized, "token_malformed"},
	} {
		a, err := askWith(s.base+"/authz/shop/orders", tc.header)
		switch {
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case a.status != tc.status || a.reason != tc.reason:
			t.Errorf("%s: got %s, want %d %s", tc.name, a, tc.status, tc.reason)
		case a.latency > slack:
			t.Errorf("%s: answered in %s", tc.name, a.latency)
		}
	}
	for _, p := range mix.probes("ES256") {
		if a := mustAsk(t, s.base, "shop", "orders", p.token); a.status != p.want || (p.reason != "" && a.reason != p.reason) {
			t.Errorf("after the bad input, %s: %s, want %d %s", p.name, a, p.want, p.reason)
		}
	}
	if !s.running() {
		t.Fatal("serve exited")
	}
	noSecretsLogged(t, s.logs.String(), mix.valid, deep, huge)
}

// TestTokenCapWithinHeaderLimit: a token cap the forward-auth listener could never reach (the
// whole header block is limited to 32 KiB and answered 431 above it) is refused as a flag, by
// serve and by manager alike.
func TestTokenCapWithinHeaderLimit(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"serve", "--policy-file", "/nonexistent", "--max-token-bytes", "65536"},
		{"manager", "--max-token-bytes", "65536"},
		{"manager", "--max-token-bytes", "1048576"},
	} {
		out, err := exec.Command(binary(t), args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(out), "--max-token-bytes") ||
			strings.Count(strings.TrimSpace(string(out)), "\n") != 0 {
			t.Errorf("claimguard %s: %v, %q; want exit 2 and one line about --max-token-bytes", strings.Join(args, " "), err, out)
		}
	}
}

// TestEngineHugePayloads drives the engine directly with tokens far over any cap a listener
// allows (1 MiB, as a direct caller of policy.Compile could configure): 10,000 and 45,000
// claims, a duplicate key hidden at the end of 45,000, nesting 300,000 deep. Every answer is a
// contract decision, time and memory per decision stay bounded (no quadratic duplicate check,
// no recursion past the depth limit).
func TestEngineHugePayloads(t *testing.T) {
	t.Parallel()
	spec := decodePolicy(t, policyDoc("shop", "orders", inlineKeys(),
		"  rules:\n  - {expression: \"size(claims) < 40000\", message: too many claims}\n")).Spec
	p, errs := policy.Compile(&spec, policy.CompileOptions{Namespace: "shop", Name: "orders", MaxTokenBytes: 1 << 20})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	manyToken := func(n int) string {
		return mint(t, "RS256", "many", func(c map[string]any) {
			for k, v := range manyClaims(n) {
				c[k] = v
			}
		})
	}
	cases := []struct {
		name   string
		token  string
		status int
		reason string
	}{
		{"10,000 claims", manyToken(10000), http.StatusOK, ""},
		{"45,000 claims: the rule refuses", manyToken(45000), http.StatusForbidden, "rule_failed"},
		{"45,000 claims and a duplicate key", dupToken(t, 45000), http.StatusUnauthorized, "token_malformed"},
		{"nesting 300,000 deep", mint(t, "RS256", "deep", func(c map[string]any) {
			for k, v := range nested(300000) {
				c[k] = v
			}
		}), http.StatusUnauthorized, "token_malformed"},
	}
	for _, tc := range cases {
		if len(tc.token) > 1<<20 {
			t.Fatalf("%s: the token is %d bytes, over the 1 MiB cap", tc.name, len(tc.token))
		}
		req := &policy.Request{Header: http.Header{"Authorization": {"Bearer " + tc.token}}, Path: "/orders"}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		const rounds = 5
		var d policy.Decision
		for range rounds {
			d = p.Decide(req)
		}
		per := time.Since(start) / rounds
		runtime.ReadMemStats(&after)
		alloc := (after.TotalAlloc - before.TotalAlloc) / rounds
		if d.Status != tc.status || string(d.Reason) != tc.reason {
			t.Errorf("%s: %d %s (%s), want %d %s", tc.name, d.Status, d.Reason, d.Description, tc.status, tc.reason)
		}
		// Bounds far above the measured values (see the log), far below what a quadratic
		// check or an unbounded copy would cost.
		if per > 500*time.Millisecond {
			t.Errorf("%s: %s per decision", tc.name, per)
		}
		if alloc > 64<<20 {
			t.Errorf("%s: %d MiB allocated per decision", tc.name, alloc>>20)
		}
		t.Logf("%s (%d KiB token): %d %s in %s, %d KiB allocated per decision", tc.name, len(tc.token)>>10, d.Status, d.Reason, per.Round(time.Microsecond), alloc>>10)
	}
}

// dupToken is a validly signed RS256 token whose payload holds n claims and then "sub" a
// second time, at the very end: a JSON encoder never writes that, so the payload text is
// built and signed here.
func dupToken(t *testing.T, n int) string {
	t.Helper()
	body, err := json.Marshal(manyClaims(n))
	if err != nil {
		t.Fatal(err)
	}
	payload := string(body[:len(body)-1]) + `,"sub":"admin"}`
	b64 := base64.RawURLEncoding.EncodeToString
	input := b64([]byte(`{"alg":"RS256","kid":"rsa1","typ":"JWT"}`)) + "." + b64([]byte(payload))
	digest := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, idp().RSA, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}
