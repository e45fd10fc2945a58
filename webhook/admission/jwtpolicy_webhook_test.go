package admission_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/webhook/admission"
)

// manifest renders a policy as the YAML a user would kubectl apply.
func manifest(t *testing.T, p *authv1alpha1.JWTPolicy) string {
	t.Helper()
	p = p.DeepCopy()
	p.APIVersion, p.Kind = authv1alpha1.GroupVersion.String(), "JWTPolicy"
	b, err := yaml.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJWTPolicyRejections applies, with the real kubectl, policies that the CRD schema accepts
// but that do not compile or hold a broken selector: each is refused, and kubectl shows the
// field and what is wrong with it.
func TestJWTPolicyRejections(t *testing.T) {
	ns := newNamespace(t)
	for _, tc := range []struct {
		name string
		mod  func(*authv1alpha1.JWTPolicy)
		want []string
	}{
		{"CEL syntax", func(p *authv1alpha1.JWTPolicy) { p.Spec.Rules = []authv1alpha1.Rule{{Expression: "claims.exp -"}} },
			[]string{`spec.rules[0].expression: Invalid value: "claims.exp -": does not compile`, "Syntax error"}},
		{"CEL type", func(p *authv1alpha1.JWTPolicy) { p.Spec.Rules = []authv1alpha1.Rule{{Expression: "'a' + 1"}} },
			[]string{"spec.rules[0].expression", "found no matching overload for '_+_'"}},
		{"regular expression", func(p *authv1alpha1.JWTPolicy) {
			p.Spec.RequiredClaims = []authv1alpha1.RequiredClaim{{Claim: "email", Operator: authv1alpha1.OpMatches, Values: []string{"(a"}}}
		}, []string{`spec.requiredClaims[0].values[0]: Invalid value: "(a": not an RE2 regular expression`}},
		{"claim path", func(p *authv1alpha1.JWTPolicy) {
			p.Spec.RequiredClaims = []authv1alpha1.RequiredClaim{{Claim: "realm_access..roles", Operator: authv1alpha1.OpExists}}
		}, []string{"spec.requiredClaims[0].claim", `write a dot inside a key as "\."`}},
		{"HMAC secret inline", func(p *authv1alpha1.JWTPolicy) {
			p.Spec.Issuers[0].JWKS.Inline = `{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}`
		}, []string{"spec.issuers[0].jwks.inline", "accepted only from a secretRef"}},
		{"http key URL", func(p *authv1alpha1.JWTPolicy) {
			p.Spec.Issuers[0].JWKS = authv1alpha1.JWKSSource{URI: "http://idp.example.com/certs"}
		}, []string{"spec.issuers[0].jwks.uri", "must use https"}},
		{"reserved forward header", func(p *authv1alpha1.JWTPolicy) {
			p.Spec.ForwardClaims = []authv1alpha1.ForwardClaim{{Claim: "sub", Header: "Authorization"}}
		}, []string{"spec.forwardClaims[0].header", "use a header of your own"}},
		{"selector operator", func(p *authv1alpha1.JWTPolicy) {
			p.Spec.IngressSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "Matches", Values: []string{"web"}}}}
		}, []string{"spec.ingressSelector.matchExpressions[0].operator", "fix the selector: as it is, the policy would select no Ingresses"}},
		{"selector without values", func(p *authv1alpha1.JWTPolicy) {
			p.Spec.IngressSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpIn}}}
		}, []string{"spec.ingressSelector.matchExpressions[0].values", "must be specified when `operator` is 'In' or 'NotIn'"}},
		{"route selector label", func(p *authv1alpha1.JWTPolicy) {
			p.Spec.RouteSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "not a value!"}}
		}, []string{"spec.routeSelector.matchLabels", "select no HTTPRoutes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := policyFixture("bad")
			p.Namespace = ns
			tc.mod(p)
			_, stderr, err := kubectl(t, manifest(t, p), "apply", "-f", "-")
			if err == nil {
				t.Fatalf("kubectl apply succeeded; stderr %q", stderr)
			}
			// kubectl formats the webhook's Invalid status itself ("The JWTPolicy ... is invalid").
			for _, want := range append([]string{`The JWTPolicy "bad" is invalid: `}, tc.want...) {
				if !strings.Contains(stderr, want) {
					t.Errorf("kubectl's error does not say %q:\n%s", want, stderr)
				}
			}
		})
	}
}

// TestJWTPolicyWarnings applies valid policies that will not work as written: kubectl prints the
// webhook's warnings on stderr and the policy is stored.
func TestJWTPolicyWarnings(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	create(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hmac"}, Data: map[string][]byte{"other.json": []byte(`{"keys":[]}`)}})
	create(t, ingressFixture(ns, "web", nginxClass, map[string]string{"app": "web"}))
	create(t, ingressFixture(ns, "api", nginxClass, map[string]string{"app": "web", "tier": "api"}))
	first := policyFixture("first", selecting(map[string]string{"app": "web"}))
	first.Namespace = ns
	if _, stderr, err := kubectl(t, manifest(t, first), "apply", "-f", "-"); err != nil || strings.Contains(stderr, "Warning") {
		t.Fatalf("first policy: %v %s", err, stderr)
	}

	for _, tc := range []struct {
		name string
		p    *authv1alpha1.JWTPolicy
		want []string
	}{
		{"secret missing", policyFixture("missing", selecting(map[string]string{"app": "none"}), func(p *authv1alpha1.JWTPolicy) {
			p.Spec.Issuers[0].JWKS = authv1alpha1.JWKSSource{SecretRef: &authv1alpha1.SecretKeyRef{Name: "idp-jwks", Key: "jwks.json"}}
		}), []string{"Warning: spec.issuers[0].jwks.secretRef: Secret idp-jwks does not exist yet in namespace " + ns + `; create it with key "jwks.json" holding the JWKS`}},
		{"secret key missing", policyFixture("nokey", selecting(map[string]string{"app": "none"}), func(p *authv1alpha1.JWTPolicy) {
			p.Spec.Issuers[0].JWKS = authv1alpha1.JWKSSource{SecretRef: &authv1alpha1.SecretKeyRef{Name: "hmac", Key: "jwks.json"}}
		}), []string{`Warning: spec.issuers[0].jwks.secretRef: Secret hmac has no key "jwks.json"; add the key holding the JWKS`}},
		{"overlap", policyFixture("second", selecting(map[string]string{"tier": "api"})),
			[]string{"Warning: spec.ingressSelector: JWTPolicy first also selects Ingress api; JWTPolicy first is older and keeps them; this policy will report Conflict. Narrow one of the ingressSelectors"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.p.Namespace = ns
			_, stderr, err := kubectl(t, manifest(t, tc.p), "apply", "-f", "-")
			if err != nil {
				t.Fatalf("a valid policy was refused: %v\n%s", err, stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("kubectl's stderr does not say %q:\n%s", want, stderr)
				}
			}
			if err := env.Client.Get(ctx, client.ObjectKeyFromObject(tc.p), &authv1alpha1.JWTPolicy{}); err != nil {
				t.Errorf("not stored: %v", err)
			}
		})
	}
}

// TestJWTPolicyDefaults: a policy stored without algorithms or tokenSources shows the effective
// ones, the defaulter's fields.
func TestJWTPolicyDefaults(t *testing.T) {
	ns := newNamespace(t)
	p := policyFixture("defaults")
	p.Namespace = ns
	p.Spec.Issuers = append(p.Spec.Issuers, authv1alpha1.Issuer{Issuer: "https://other.example.com", JWKS: p.Spec.Issuers[0].JWKS, Algorithms: []authv1alpha1.Algorithm{authv1alpha1.ES256, authv1alpha1.RS256}})
	create(t, p)
	got := &authv1alpha1.JWTPolicy{}
	if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(p), got); err != nil {
		t.Fatal(err)
	}
	d := admission.NewJWTPolicyDefaulter()
	if diff := cmp.Diff(d.Algorithms, got.Spec.Issuers[0].Algorithms); diff != "" {
		t.Errorf("issuer without algorithms (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]authv1alpha1.Algorithm{authv1alpha1.ES256, authv1alpha1.RS256}, got.Spec.Issuers[1].Algorithms); diff != "" {
		t.Errorf("an issuer's own algorithms were changed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(d.TokenSources, got.Spec.TokenSources); diff != "" {
		t.Errorf("tokenSources (-want +got):\n%s", diff)
	}
}
