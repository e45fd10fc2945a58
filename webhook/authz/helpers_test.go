package authz

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
	"github.com/claimguard/claimguard/webhook/authz/authztest"
)

const testIssuerURL = "https://idp.example.com/realms/shop"

// testIssuer signs every token of the package's tests; keys are generated
// once per test binary.
var testIssuer = sync.OnceValue(func() *authztest.Issuer {
	iss, err := authztest.NewIssuer(testIssuerURL)
	if err != nil {
		panic(err)
	}
	return iss
})

// ordersSpec is the main test policy: audience, a required scope, forwarded
// claims and public paths.
func ordersSpec() *authv1alpha1.JWTPolicySpec {
	return &authv1alpha1.JWTPolicySpec{
		Issuers: []authv1alpha1.Issuer{{
			Issuer:     testIssuerURL,
			Audiences:  []string{"orders-api"},
			Algorithms: []authv1alpha1.Algorithm{authv1alpha1.RS256, authv1alpha1.ES256},
			JWKS:       authv1alpha1.JWKSSource{Inline: testIssuer().PublicJWKS()},
		}},
		RequiredClaims: []authv1alpha1.RequiredClaim{
			{Claim: "scope", Operator: authv1alpha1.OpContainsAny, Values: []string{"orders:read"}},
		},
		ForwardClaims: []authv1alpha1.ForwardClaim{
			{Claim: "sub", Header: "X-Auth-Subject"},
			{Claim: "roles", Header: "X-Auth-Roles"},
		},
		ClockSkew:   &metav1.Duration{Duration: 0},
		PublicPaths: []string{"/healthz", "/public/"},
	}
}

func auditSpec() *authv1alpha1.JWTPolicySpec {
	s := ordersSpec()
	s.Mode = authv1alpha1.ModeAudit
	return s
}

func cookieSpec() *authv1alpha1.JWTPolicySpec {
	s := ordersSpec()
	s.TokenSources = []authv1alpha1.TokenSource{{Cookie: &authv1alpha1.CookieTokenSource{Name: "access_token"}}}
	return s
}

type namedSpec struct {
	ns, name string
	spec     *authv1alpha1.JWTPolicySpec
}

func compileAll(t testing.TB, cache *policy.Cache, specs ...namedSpec) []*policy.Policy {
	t.Helper()
	var out []*policy.Policy
	for _, s := range specs {
		p, errs := policy.Compile(s.spec, policy.CompileOptions{Namespace: s.ns, Name: s.name, Cache: cache})
		if len(errs) > 0 {
			t.Fatalf("compile %s/%s: %v", s.ns, s.name, errs.ToAggregate())
		}
		out = append(out, p)
	}
	return out
}

// defaultPolicies are shop/orders (Enforce), shop/audit (Audit) and
// shop/cookie (token from a cookie).
func defaultPolicies(t testing.TB, cache *policy.Cache) []*policy.Policy {
	return compileAll(t, cache,
		namedSpec{"shop", "orders", ordersSpec()},
		namedSpec{"shop", "audit", auditSpec()},
		namedSpec{"shop", "cookie", cookieSpec()},
	)
}

// logSink collects log lines as text.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, prefix+" "+args)
		l.mu.Unlock()
	}, funcr.Options{Verbosity: 1})
}

func (l *logSink) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

type testServer struct {
	*Server
	store *store.Store
	reg   *prometheus.Registry
	logs  *logSink
	cache *policy.Cache
}

// newTestServer builds a Server over a store holding policies (published
// unless nil) with a fresh registry and a captured log.
func newTestServer(t testing.TB, policies []*policy.Policy, mod func(*Options)) *testServer {
	t.Helper()
	ts := &testServer{store: store.New(), reg: prometheus.NewRegistry(), logs: &logSink{}}
	opts := Options{Store: ts.store, Registry: ts.reg, Logger: ts.logs.logger()}
	if mod != nil {
		mod(&opts)
	}
	s, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts.Server = s
	if policies != nil {
		ts.store.Publish(store.NewSnapshot(policies, nil))
	}
	return ts
}

// request builds an auth sub-request to path with headers as "Name: value"
// lines.
func request(method, path string, headers ...string) *http.Request {
	// httptest parses the target like the server does: no cleaning, the
	// escaped form kept in URL.RawPath.
	r := httptest.NewRequest(method, "http://claimguard.local"+path, nil)
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		r.Header.Add(name, strings.TrimSpace(value))
	}
	return r
}

func (ts *testServer) do(r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	ts.ServeHTTP(w, r)
	return w
}

func validClaims() map[string]any {
	c := testIssuer().Claims("alice", time.Now())
	c["scope"] = "orders:read orders:write"
	c["roles"] = []string{"admin", "ops"}
	return c
}

func token(t testing.TB, alg string, mod func(map[string]any)) string {
	t.Helper()
	c := validClaims()
	if mod != nil {
		mod(c)
	}
	tok, err := testIssuer().Token(alg, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
