package authz

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
)

// want is the observable answer of one request.
type want struct {
	status int
	// headers that must be present with these exact values ("" = absent).
	headers map[string]string
	// body, when set, must equal the response body.
	body string
}

// TestContractTable walks the rows of CONTRACT.md's HTTP table and the
// decided edge cases that concern the server.
func TestContractTable(t *testing.T) {
	ts := newTestServer(t, defaultPolicies(t, policy.NewCache(1000)), nil)
	good := token(t, "RS256", nil)
	goodES := token(t, "ES256", nil)
	expired := token(t, "RS256", func(c map[string]any) { c["exp"] = time.Now().Add(-3 * time.Minute).Unix() })
	noScope := token(t, "RS256", func(c map[string]any) { c["scope"] = "other" })
	wrongAud := token(t, "RS256", func(c map[string]any) { c["aud"] = "billing" })
	badSig := good[:len(good)-4] + "AAAA"
	if badSig == good {
		t.Fatal("tampering did not change the token")
	}
	bearer := func(tok string) string { return "Authorization: Bearer " + tok }
	nginx := func(uri string) string { return "X-Original-URL: https://shop.example.com" + uri }
	allowHeaders := map[string]string{"X-Auth-Subject": "alice", "X-Auth-Roles": "admin,ops", "Www-Authenticate": "", "X-Claimguard-Reason": "", "X-Claimguard-Audit": ""}
	noClaims := map[string]string{"X-Auth-Subject": "", "X-Auth-Roles": "", "Www-Authenticate": ""}

	tests := []struct {
		name string
		req  *http.Request
		want want
	}{
		{"allowed RS256", request("GET", "/authz/shop/orders", bearer(good), nginx("/orders/1")), want{status: 200, headers: allowHeaders, body: ""}},
		{"allowed ES256", request("GET", "/authz/shop/orders", bearer(goodES), nginx("/orders/1")), want{status: 200, headers: allowHeaders}},
		{"any method: POST", request("POST", "/authz/shop/orders", bearer(good)), want{status: 200, headers: allowHeaders}},
		{"any method: DELETE", request("DELETE", "/authz/shop/orders", bearer(good)), want{status: 200, headers: allowHeaders}},
		{"scheme is case-insensitive", request("GET", "/authz/shop/orders", "Authorization: bearer   "+good), want{status: 200, headers: allowHeaders}},
		{"cookie source", request("GET", "/authz/shop/cookie", "Cookie: a=b; access_token="+good), want{status: 200, headers: allowHeaders}},

		{"public path, nginx header, no token", request("GET", "/authz/shop/orders", nginx("/public/logo.png?v=1")), want{status: 200, headers: noClaims}},
		{"public path, exact", request("GET", "/authz/shop/orders", nginx("/healthz")), want{status: 200, headers: noClaims}},
		{"public path, traefik/caddy header", request("GET", "/authz/shop/orders", "X-Forwarded-Method: GET", "X-Forwarded-Proto: https", "X-Forwarded-Host: shop.example.com", "X-Forwarded-Uri: /public/a?b=c"), want{status: 200, headers: noClaims}},
		{"public path ignores a bad token", request("GET", "/authz/shop/orders", bearer("garbage"), nginx("/public/x")), want{status: 200, headers: noClaims}},
		{"public path, both headers agree", request("GET", "/authz/shop/orders", nginx("/public/x?q"), "X-Forwarded-Uri: /public/x"), want{status: 200, headers: noClaims}},
		{"path conflict is never public", request("GET", "/authz/shop/orders", nginx("/public/x"), "X-Forwarded-Uri: /admin"), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "token_missing"}}},
		{"repeated X-Original-URL is never public", request("GET", "/authz/shop/orders", nginx("/public/x"), nginx("/public/x")), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "token_missing"}}},
		{"dot segments are never public", request("GET", "/authz/shop/orders", nginx("/public/../admin")), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "token_missing"}}},
		{"encoded slash is never public", request("GET", "/authz/shop/orders", nginx("/public%2F..%2Fadmin")), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "token_missing"}}},
		{"public prefix needs its slash", request("GET", "/authz/shop/orders", nginx("/publicity")), want{status: 401}},

		{"no token", request("GET", "/authz/shop/orders", nginx("/orders")), want{status: 401, body: "401 token_missing\n",
			headers: map[string]string{"Www-Authenticate": `Bearer realm="claimguard"`, "X-Claimguard-Reason": "token_missing", "Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store"}}},
		{"other scheme counts as absent", request("GET", "/authz/shop/orders", "Authorization: Basic dXNlcjpwdw=="), want{status: 401,
			headers: map[string]string{"Www-Authenticate": `Bearer realm="claimguard"`, "X-Claimguard-Reason": "token_missing"}}},
		{"scheme without a token", request("GET", "/authz/shop/orders", "Authorization: Bearer"), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "token_malformed"}}},
		{"repeated Authorization", request("GET", "/authz/shop/orders", bearer(good), bearer(good)), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "token_malformed"}}},
		{"unreadable token", request("GET", "/authz/shop/orders", bearer("not.a-token")), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "token_malformed"}}},
		{"too large", request("GET", "/authz/shop/orders", bearer(strings.Repeat("a", 9000))), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "token_too_large"}}},
		{"bad signature", request("GET", "/authz/shop/orders", bearer(badSig)), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "signature_invalid"}}},
		{"expired", request("GET", "/authz/shop/orders", bearer(expired)), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "token_expired", "X-Auth-Subject": ""}}},
		{"wrong audience", request("GET", "/authz/shop/orders", bearer(wrongAud)), want{status: 401, headers: map[string]string{"X-Claimguard-Reason": "audience_mismatch"}}},
		{"required claim fails: 403", request("GET", "/authz/shop/orders", bearer(noScope)), want{status: 403, headers: map[string]string{"X-Claimguard-Reason": "claim_mismatch", "X-Auth-Subject": ""}}},

		{"audit: would be expired", request("GET", "/authz/shop/audit", bearer(expired)), want{status: 200, body: "",
			headers: map[string]string{"X-Claimguard-Audit": "token_expired", "X-Auth-Subject": "", "Www-Authenticate": "", "X-Claimguard-Reason": ""}}},
		{"audit: no token", request("GET", "/authz/shop/audit"), want{status: 200, headers: map[string]string{"X-Claimguard-Audit": "token_missing"}}},
		{"audit: valid token", request("GET", "/authz/shop/audit", bearer(good)), want{status: 200, headers: map[string]string{"X-Claimguard-Audit": "", "X-Auth-Subject": "alice"}}},

		{"unknown policy", request("GET", "/authz/shop/nope", bearer(good)), want{status: 403, body: "403 policy_not_found: no such policy\n",
			headers: map[string]string{"X-Claimguard-Reason": "policy_not_found", "X-Auth-Subject": ""}}},
		{"unknown namespace", request("GET", "/authz/bank/orders", bearer(good)), want{status: 403, headers: map[string]string{"X-Claimguard-Reason": "policy_not_found"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, ts.do(tt.req), tt.want)
		})
	}
}

func check(t *testing.T, w *httptest.ResponseRecorder, want want) {
	t.Helper()
	if w.Code != want.status {
		t.Errorf("status %d, want %d (body %q)", w.Code, want.status, w.Body.String())
	}
	for name, v := range want.headers {
		got, present := w.Header()[http.CanonicalHeaderKey(name)]
		switch {
		case v == "" && present:
			t.Errorf("header %s = %q, want absent", name, got)
		case v != "" && (len(got) != 1 || got[0] != v):
			t.Errorf("header %s = %q, want %q", name, got, v)
		}
	}
	if want.body != "" || (want.status == 200 && want.headers != nil) {
		if got := w.Body.String(); got != want.body {
			t.Errorf("body %q, want %q", got, want.body)
		}
	}
}

// TestDenialAnswers checks the shape of every 401/403: RFC 6750 challenge
// with error and description, the reason header, a one-line body that never
// holds the token.
func TestDenialAnswers(t *testing.T) {
	ts := newTestServer(t, defaultPolicies(t, nil), nil)
	expired := token(t, "RS256", func(c map[string]any) { c["exp"] = time.Now().Add(-3 * time.Minute).Unix() })
	noScope := token(t, "RS256", func(c map[string]any) { c["scope"] = `"quoted" \ value` })
	tests := []struct {
		tok        string
		status     int
		challenge  string // prefix
		reason     string
		bodyPrefix string
	}{
		{expired, 401, `Bearer error="invalid_token", error_description="`, "token_expired", "401 token_expired: "},
		{noScope, 403, `Bearer error="insufficient_scope", error_description="`, "claim_mismatch", "403 claim_mismatch: "},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			w := ts.do(request("GET", "/authz/shop/orders", "Authorization: Bearer "+tt.tok))
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d", w.Code, tt.status)
			}
			ch := w.Header().Get("WWW-Authenticate")
			if !strings.HasPrefix(ch, tt.challenge) || !strings.HasSuffix(ch, `"`) || len(ch) == len(tt.challenge)+1 {
				t.Errorf("WWW-Authenticate %q lacks %s... and a description", ch, tt.challenge)
			}
			if strings.ContainsAny(ch, "\r\n") {
				t.Errorf("challenge holds a line break: %q", ch)
			}
			body := w.Body.String()
			if !strings.HasPrefix(body, tt.bodyPrefix) || strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") {
				t.Errorf("body %q is not one line starting %q", body, tt.bodyPrefix)
			}
			for _, part := range strings.Split(tt.tok, ".") {
				if strings.Contains(body, part) || strings.Contains(ch, part) {
					t.Errorf("answer echoes a token segment")
				}
			}
			if got := w.Header().Get("X-Claimguard-Reason"); got != tt.reason {
				t.Errorf("X-Claimguard-Reason %q, want %q", got, tt.reason)
			}
		})
	}
}

// TestRouting: malformed /authz paths are 403 policy_not_found, never a
// redirect; other paths are 404 except the operational ones. A path below
// /authz/{namespace}/{policy} is the original request's path, appended by
// Gateway API's ExternalAuth filter.
func TestRouting(t *testing.T) {
	ts := newTestServer(t, defaultPolicies(t, nil), nil)
	tests := []struct {
		path   string
		status int
		reason string
	}{
		{"/authz", 403, "policy_not_found"},
		{"/authz/", 403, "policy_not_found"},
		{"/authz/shop", 403, "policy_not_found"},
		{"/authz/shop/", 403, "policy_not_found"},
		{"/authz//orders", 403, "policy_not_found"},
		{"/authz/shop//orders", 403, "policy_not_found"},
		{"/authz/shop/orders/", 401, "token_missing"},
		{"/authz/shop/orders/extra", 401, "token_missing"},
		{"/authz/shop/orders/public/x", 200, ""},
		{"/authz/shop/orders%2Fpublic/x", 403, "policy_not_found"},
		{"/authz/shop/orders.x/y", 403, "policy_not_found"},
		{"/authz/shop/../shop/orders", 403, "policy_not_found"},
		{"/authz/./shop/orders", 403, "policy_not_found"},
		{"/authz/shop%2Forders/x", 403, "policy_not_found"},
		{"/authz/shop/order%73", 403, "policy_not_found"},
		{"/authz/Shop/orders", 403, "policy_not_found"},
		{"/authz/shop/Orders", 403, "policy_not_found"},
		{"/authz/-shop/orders", 403, "policy_not_found"},
		{"/authz/shop/orders.", 403, "policy_not_found"},
		{"/authz/" + strings.Repeat("a", 64) + "/orders", 403, "policy_not_found"},
		{"/", 404, ""},
		{"/authzshop/orders", 404, ""},
		{"/auth/shop/orders", 404, ""},
		{"/healthz/", 404, ""},
		{"/metrics/x", 404, ""},
		{"/healthz", 200, ""},
		{"/readyz", 200, ""},
		{"/metrics", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			w := ts.do(request("GET", tt.path))
			if w.Code != tt.status {
				t.Errorf("status %d, want %d", w.Code, tt.status)
			}
			if loc := w.Header().Get("Location"); loc != "" {
				t.Errorf("redirect to %q", loc)
			}
			if got := w.Header().Get("X-Claimguard-Reason"); got != tt.reason {
				t.Errorf("reason %q, want %q", got, tt.reason)
			}
		})
	}
}

func TestSplitAuthzPath(t *testing.T) {
	tests := []struct {
		path             string
		ns, name, suffix string
		ok               bool
	}{
		{"/authz/shop/orders", "shop", "orders", "", true},
		{"/authz/a-1/b.c-2", "a-1", "b.c-2", "", true},
		{"/authz/shop/orders/", "shop", "orders", "/", true},
		{"/authz/shop/orders/api/v1/x%2Fy", "shop", "orders", "/api/v1/x%2Fy", true},
		{"/authz/shop/orders//x", "shop", "orders", "//x", true},
		{"/authz/shop//orders", "", "", "", false},
		{"/authz/shop/a..b", "", "", "", false},
		{"/authz/shop/.a", "", "", "", false},
		{"/authz/shop/" + strings.Repeat("a", 63) + "." + strings.Repeat("b", 63), "shop", strings.Repeat("a", 63) + "." + strings.Repeat("b", 63), "", true},
		{"/authz/shop/" + strings.Repeat("a", 64), "", "", "", false},
		{"/authz/shop/under_score", "", "", "", false},
	}
	for _, tt := range tests {
		ns, name, suffix, ok := splitAuthzPath(tt.path)
		if ns != tt.ns || name != tt.name || suffix != tt.suffix || ok != tt.ok {
			t.Errorf("splitAuthzPath(%q) = %q, %q, %q, %v; want %q, %q, %q, %v", tt.path, ns, name, suffix, ok, tt.ns, tt.name, tt.suffix, tt.ok)
		}
	}
}

func TestOriginalPath(t *testing.T) {
	tests := []struct {
		name     string
		headers  []string
		path     string
		conflict bool
	}{
		{"none", nil, "", false},
		{"nginx absolute URL", []string{"X-Original-URL: https://h.example:8443/a/b?x=1#f"}, "/a/b", false},
		{"nginx URL without path", []string{"X-Original-URL: https://h.example?x"}, "/", false},
		{"nginx origin form", []string{"X-Original-URL: /a?x"}, "/a", false},
		{"scheme-relative is not a path", []string{"X-Original-URL: //evil/a"}, "", false},
		{"garbage", []string{"X-Original-URL: nonsense"}, "", false},
		{"forwarded uri", []string{"X-Forwarded-Uri: /a%2Fb?x"}, "/a%2Fb", false},
		{"both agree", []string{"X-Original-URL: http://h/a", "X-Forwarded-Uri: /a?y"}, "/a", false},
		{"both disagree", []string{"X-Original-URL: http://h/public/a", "X-Forwarded-Uri: /admin"}, "/public/a", true},
		{"repeated forwarded uri", []string{"X-Forwarded-Uri: /public/a", "X-Forwarded-Uri: /admin"}, "/public/a", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request("GET", "/", tt.headers...)
			path, conflict := OriginalPath(r.Header)
			if path != tt.path || conflict != tt.conflict {
				t.Errorf("originalPath = %q, %v; want %q, %v", path, conflict, tt.path, tt.conflict)
			}
		})
	}
}

// TestReadyz: not ready before the first snapshot, ready after it (inline
// keys load at compile time), not ready while a policy's secret is missing,
// and not ready while draining.
func TestReadyz(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	if w := ts.do(request("GET", "/readyz")); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "no policies") {
		t.Errorf("before publish: %d %q", w.Code, w.Body.String())
	}
	if w := ts.do(request("GET", "/healthz")); w.Code != http.StatusOK {
		t.Errorf("/healthz before publish: %d", w.Code)
	}
	if w := ts.do(request("GET", "/authz/shop/orders")); w.Code != http.StatusForbidden {
		t.Errorf("before publish an authz request must fail closed, got %d", w.Code)
	}
	ts.store.Publish(store.NewSnapshot(defaultPolicies(t, nil), nil))
	if w := ts.do(request("GET", "/readyz")); w.Code != http.StatusOK {
		t.Errorf("after publish: %d %q", w.Code, w.Body.String())
	}

	hs := ordersSpec()
	hs.Issuers[0].JWKS.Inline = ""
	hs.Issuers[0].JWKS.SecretRef = nil
	hs.Issuers[0].Algorithms = nil
	hs.Issuers[0].JWKS.URI = "https://idp.invalid/jwks" // no Fetcher: never loads
	waiting := compileAll(t, nil, namedSpec{"shop", "remote", hs})
	ts.store.Publish(store.NewSnapshot(append(defaultPolicies(t, nil), waiting...), nil))
	if w := ts.do(request("GET", "/readyz")); w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "shop/remote") {
		t.Errorf("with unloaded keys: %d %q", w.Code, w.Body.String())
	}
	ts.store.Publish(store.NewSnapshot(defaultPolicies(t, nil), nil))
	ts.draining.Store(true)
	if w := ts.do(request("GET", "/readyz")); w.Code != http.StatusServiceUnavailable {
		t.Errorf("while draining: %d", w.Code)
	}
	if w := ts.do(request("GET", "/authz/shop/orders", "Authorization: Bearer "+token(t, "RS256", nil))); w.Code != http.StatusOK {
		t.Errorf("requests must still be answered while draining, got %d", w.Code)
	}
}

// TestSnapshotSwap: a new snapshot takes effect for the next request.
func TestSnapshotSwap(t *testing.T) {
	ts := newTestServer(t, defaultPolicies(t, nil), nil)
	good := "Authorization: Bearer " + token(t, "RS256", nil)
	if w := ts.do(request("GET", "/authz/shop/orders", good)); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	stricter := ordersSpec()
	stricter.RequiredClaims[0].Values = []string{"orders:admin"}
	ts.store.Publish(store.NewSnapshot(compileAll(t, nil, namedSpec{"shop", "orders", stricter}), nil))
	if w := ts.do(request("GET", "/authz/shop/orders", good)); w.Code != 403 {
		t.Errorf("after the swap: status %d, want 403", w.Code)
	}
	if w := ts.do(request("GET", "/authz/shop/audit", good)); w.Code != 403 {
		t.Errorf("a policy gone from the snapshot: status %d, want 403", w.Code)
	}
}

// TestInvalidPolicyFailsClosed: a policy the snapshot holds as invalid is
// denied with policy_not_found, and the log names the cause.
func TestInvalidPolicyFailsClosed(t *testing.T) {
	ts := newTestServer(t, nil, nil)
	ts.store.Publish(store.NewSnapshot(defaultPolicies(t, nil), map[store.Key]string{{Namespace: "shop", Name: "broken"}: "spec.issuers: Required value"}))
	w := ts.do(request("GET", "/authz/shop/broken", "Authorization: Bearer "+token(t, "RS256", nil)))
	check(t, w, want{status: 403, headers: map[string]string{"X-Claimguard-Reason": "policy_not_found"}})
	logs := strings.Join(ts.logs.all(), "\n")
	if !strings.Contains(logs, "spec.issuers: Required value") || !strings.Contains(logs, "shop/broken") {
		t.Errorf("log does not name the invalid policy and its cause:\n%s", logs)
	}
}

// TestLogLines: one line per denial with reason, policy, request id and the
// original request; none per allow; never the token.
func TestLogLines(t *testing.T) {
	ts := newTestServer(t, defaultPolicies(t, nil), nil)
	good := token(t, "RS256", nil)
	expired := token(t, "RS256", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })
	ts.do(request("GET", "/authz/shop/orders", "Authorization: Bearer "+good, "X-Request-ID: req-1", "X-Original-URL: https://shop.example.com/orders/1?access_token=secret", "X-Original-Method: PUT"))
	if lines := ts.logs.all(); len(lines) != 0 {
		t.Fatalf("an allow logged %d lines: %q", len(lines), lines)
	}
	ts.do(request("GET", "/authz/shop/orders", "Authorization: Bearer "+expired, "X-Request-ID: req-2", "X-Original-URL: https://shop.example.com/orders/1?access_token=secret", "X-Original-Method: PUT"))
	ts.do(request("GET", "/authz/shop/audit", "Authorization: Bearer "+expired, "X-Forwarded-Host: shop.example.com", "X-Forwarded-Uri: /a?b", "X-Forwarded-Method: POST"))
	ts.do(request("GET", "/authz/nowhere/x", "X-Request-ID: req-4"))
	lines := ts.logs.all()
	if len(lines) != 3 {
		t.Fatalf("got %d log lines, want 3:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i, wantParts := range [][]string{
		{`"reason"="token_expired"`, `"JWTPolicy"="shop/orders"`, `"requestID"="req-2"`, `"method"="PUT"`, `"host"="shop.example.com"`, `"path"="/orders/1"`},
		{`"reason"="token_expired"`, `"JWTPolicy"="shop/audit"`, `"method"="POST"`, `"host"="shop.example.com"`, `"path"="/a"`, "Audit"},
		{`"reason"="policy_not_found"`, `"JWTPolicy"="nowhere/x"`, `"requestID"="req-4"`},
	} {
		for _, p := range wantParts {
			if !strings.Contains(lines[i], p) {
				t.Errorf("line %d lacks %s: %s", i, p, lines[i])
			}
		}
	}
	if !strings.Contains(lines[1], `"requestID"="`) {
		t.Errorf("a request without X-Request-ID got no generated id: %s", lines[1])
	}
	for _, l := range lines {
		for _, part := range strings.Split(expired, ".") {
			if strings.Contains(l, part) {
				t.Errorf("log line holds a token segment: %s", l)
			}
		}
		if strings.Contains(l, "secret") || strings.Contains(l, "alice") {
			t.Errorf("log line holds the query or a claim value: %s", l)
		}
	}
}

// TestLogAllowed: with LogAllowed, allows are logged at V(1).
func TestLogAllowed(t *testing.T) {
	ts := newTestServer(t, defaultPolicies(t, nil), func(o *Options) { o.LogAllowed = true })
	ts.do(request("GET", "/authz/shop/orders", "Authorization: Bearer "+token(t, "RS256", nil), "X-Request-ID: r1"))
	lines := ts.logs.all()
	if len(lines) != 1 || !strings.Contains(lines[0], "allowed") || !strings.Contains(lines[0], `"requestID"="r1"`) {
		t.Errorf("log lines %q", lines)
	}
}

func TestLogField(t *testing.T) {
	if diff := cmp.Diff("a?b?c...", logField("a\nb\x00c"+strings.Repeat("x", 10), 5)); diff != "" {
		t.Error(diff)
	}
	if got := logField("plain", 10); got != "plain" {
		t.Errorf("logField(plain) = %q", got)
	}
}

// TestGatewayAPIPath: Gateway API's ExternalAuth filter appends the original
// path to /authz/{namespace}/{policy} and sends no original-URL header; the
// appended path decides public paths, and it never overrides a proxy header
// that disagrees with it.
func TestGatewayAPIPath(t *testing.T) {
	tests := []struct {
		name     string
		headers  []string
		suffix   string
		path     string
		conflict bool
	}{
		{"appended path only", nil, "/public/x", "/public/x", false},
		{"no suffix, no header", nil, "", "", false},
		{"header agrees", []string{"X-Forwarded-Uri: /public/x?q=1"}, "/public/x", "/public/x", false},
		{"header disagrees", []string{"X-Original-URL: https://h/admin"}, "/public/x", "/admin", true},
		{"header only", []string{"X-Original-URL: https://h/admin"}, "", "/admin", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := request("GET", "/", tt.headers...)
			path, conflict := requestPath(r.Header, tt.suffix)
			if path != tt.path || conflict != tt.conflict {
				t.Errorf("requestPath = %q, %v; want %q, %v", path, conflict, tt.path, tt.conflict)
			}
		})
	}
}
