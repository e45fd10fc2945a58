package controllers

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/testenv"
)

// TestSecretRotation: rotating the JWKS in a referenced Secret is served within seconds; a
// Secret that goes away is reported (SecretNotFound) and denied as keys_unavailable; its
// return heals both.
func TestSecretRotation(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	h := startManager(t, ns, harnessOptions{})
	ctx := context.Background()
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "idp-jwks"},
		Data:       map[string][]byte{"jwks.json": []byte(idp.PublicJWKS())},
	}
	create(t, secret)
	create(t, policyFixture(ns, "orders", withJWKS(authv1alpha1.JWKSSource{SecretRef: &authv1alpha1.SecretKeyRef{Name: "idp-jwks", Key: "jwks.json"}})))
	testenv.Eventually(t, 10*time.Second, "Ready", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
	oldTok := idp.MustToken("RS256", idp.Claims("alice", time.Now()))
	newTok := idp2.MustToken("RS256", idp2.Claims("alice", time.Now()))
	h.waitDecision(t, ns, "orders", oldTok, true, "")

	update(t, secret, func(s *corev1.Secret) { s.Data["jwks.json"] = []byte(idp2.PublicJWKS()) })
	rotated := time.Now()
	testenv.Eventually(t, 5*time.Second, "rotated keys served", func() error {
		d, err := h.decide(ns, "orders", newTok)
		if err != nil {
			return err
		}
		if !d.Allowed {
			return fmt.Errorf("token of the new key denied: %s", d.Reason)
		}
		return nil
	})
	t.Logf("rotation served after %s", time.Since(rotated).Round(time.Millisecond))
	h.waitDecision(t, ns, "orders", oldTok, false, policy.SignatureInvalid)

	// The key goes missing from the Secret, then the Secret itself.
	update(t, secret, func(s *corev1.Secret) { s.Data = map[string][]byte{"other": []byte("x")} })
	testenv.Eventually(t, 10*time.Second, "SecretNotFound (key)", conditionIs(ns, "orders", authv1alpha1.ConditionKeysLoaded, metav1.ConditionFalse, authv1alpha1.ReasonSecretNotFound))
	if msg := getCondition(getPolicy(t, ns, "orders").Status.Conditions, authv1alpha1.ConditionKeysLoaded).Message; !strings.Contains(msg, `no key "jwks.json"`) {
		t.Errorf("message does not name the missing key: %q", msg)
	}
	if err := env.Client.Delete(ctx, secret); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "Ready False", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonNotReady))
	h.waitDecision(t, ns, "orders", newTok, false, policy.KeysUnavailable)
	st := getPolicy(t, ns, "orders").Status
	if len(st.Keys) != 1 || len(st.Keys[0].Kids) != 0 || !strings.Contains(st.Keys[0].Message, "idp-jwks") {
		t.Errorf("status.keys of a missing Secret: %+v", st.Keys)
	}

	create(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "idp-jwks"},
		Data:       map[string][]byte{"jwks.json": []byte(idp2.PublicJWKS())},
	})
	testenv.Eventually(t, 10*time.Second, "Ready again", conditionIs(ns, "orders", authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled))
	h.waitDecision(t, ns, "orders", newTok, true, "")
}

// jwksServer serves a key set; mode decides how: "ok", "fail" (500), "hang" (until the test
// ends), "flaky" (the first request succeeds, the rest fail).
func jwksServer(t *testing.T, mode string) string {
	t.Helper()
	release := make(chan struct{})
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := n.Add(1) == 1
		switch {
		case mode == "ok", mode == "flaky" && first:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(idp.PublicJWKS()))
		case mode == "hang":
			select {
			case <-release:
			case <-r.Context().Done():
			}
			http.Error(w, "gone", http.StatusServiceUnavailable)
		default:
			http.Error(w, "identity provider down", http.StatusInternalServerError)
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv.URL + "/certs"
}

type wantCondition struct {
	typ    string
	status metav1.ConditionStatus
	reason string
}

// TestConditionReasons covers every KeysLoaded, IngressesWired and Ready reason not covered
// by the wiring, conflict and Traefik tests, each on its own policy.
func TestConditionReasons(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t)
	h := startManager(t, ns, harnessOptions{fetcher: keys.FetcherOptions{
		FetchTimeout:   20 * time.Second,
		DefaultRefresh: time.Second,
		MinRefresh:     time.Second,
	}})
	ctx := context.Background()
	only := func(name string) func(*authv1alpha1.JWTPolicy) { return withSelector(map[string]string{"case": name}) }
	ready := wantCondition{authv1alpha1.ConditionReady, metav1.ConditionTrue, authv1alpha1.ReasonCompiled}
	notReady := wantCondition{authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonNotReady}
	nothing := wantCondition{authv1alpha1.ConditionIngressesWired, metav1.ConditionTrue, authv1alpha1.ReasonNothingSelected}

	cases := []struct {
		name     string
		mods     []func(*authv1alpha1.JWTPolicy)
		ingress  *string // class of an Ingress labelled case=<name>; nil: none
		want     []wantCondition
		message  string // a substring of the first wanted condition's message
		event    string // a Warning event reason the policy must get
		wired    bool   // the Ingress must carry the policy's wiring
		decision policy.Reason
	}{
		{
			name: "inline", want: []wantCondition{
				{authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysLoaded}, nothing, ready,
			},
			message: "",
		},
		{
			name: "uri-ok", mods: []func(*authv1alpha1.JWTPolicy){withJWKS(authv1alpha1.JWKSSource{URI: jwksServer(t, "ok")})},
			want: []wantCondition{{authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysLoaded}, ready},
		},
		{
			name: "uri-down", mods: []func(*authv1alpha1.JWTPolicy){withJWKS(authv1alpha1.JWKSSource{URI: jwksServer(t, "fail")})},
			want:    []wantCondition{{authv1alpha1.ConditionKeysLoaded, metav1.ConditionFalse, authv1alpha1.ReasonKeysUnavailable}, notReady},
			message: "500", event: authv1alpha1.ReasonKeysUnavailable, decision: policy.KeysUnavailable,
		},
		{
			name: "uri-hang", mods: []func(*authv1alpha1.JWTPolicy){withJWKS(authv1alpha1.JWKSSource{URI: jwksServer(t, "hang")})},
			want: []wantCondition{
				{authv1alpha1.ConditionKeysLoaded, metav1.ConditionUnknown, authv1alpha1.ReasonKeysLoading},
				{authv1alpha1.ConditionReady, metav1.ConditionUnknown, authv1alpha1.ReasonNotReady},
			},
			message: "fetching",
		},
		{
			name: "uri-stale", mods: []func(*authv1alpha1.JWTPolicy){withJWKS(authv1alpha1.JWKSSource{URI: jwksServer(t, "flaky")})},
			want:    []wantCondition{{authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysStale}, ready},
			message: "last keys loaded",
		},
		{
			name: "secret-missing", mods: []func(*authv1alpha1.JWTPolicy){withJWKS(authv1alpha1.JWKSSource{SecretRef: &authv1alpha1.SecretKeyRef{Name: "absent", Key: "jwks.json"}})},
			want:    []wantCondition{{authv1alpha1.ConditionKeysLoaded, metav1.ConditionFalse, authv1alpha1.ReasonSecretNotFound}, notReady},
			message: "absent", event: authv1alpha1.ReasonSecretNotFound, decision: policy.KeysUnavailable,
		},
		{
			// Helm release Secrets are never read (their data is not even cached).
			name: "secret-helm", mods: []func(*authv1alpha1.JWTPolicy){withJWKS(authv1alpha1.JWKSSource{SecretRef: &authv1alpha1.SecretKeyRef{Name: "helm-release", Key: "jwks.json"}})},
			want:    []wantCondition{{authv1alpha1.ConditionKeysLoaded, metav1.ConditionFalse, authv1alpha1.ReasonSecretNotFound}},
			message: "helm.sh/release.v1, which claimguard does not read",
		},
		{
			// Does not compile, yet its Ingress is wired: the server then denies (fail closed).
			name: "bad-rule", ingress: ptr.To(nginxClass), wired: true,
			mods: []func(*authv1alpha1.JWTPolicy){func(p *authv1alpha1.JWTPolicy) {
				p.Spec.Rules = []authv1alpha1.Rule{{Expression: "claims.exp >"}}
			}},
			want: []wantCondition{
				{authv1alpha1.ConditionReady, metav1.ConditionFalse, authv1alpha1.ReasonInvalidSpec},
				{authv1alpha1.ConditionKeysLoaded, metav1.ConditionUnknown, authv1alpha1.ReasonInvalidSpec},
				{authv1alpha1.ConditionIngressesWired, metav1.ConditionTrue, authv1alpha1.ReasonWired},
			},
			message: "spec.rules[0]", event: authv1alpha1.ReasonInvalidSpec,
		},
		{
			name: "bad-selector", mods: []func(*authv1alpha1.JWTPolicy){func(p *authv1alpha1.JWTPolicy) {
				p.Spec.IngressSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "case", Operator: metav1.LabelSelectorOpIn}}}
			}},
			want:    []wantCondition{{authv1alpha1.ConditionIngressesWired, metav1.ConditionFalse, authv1alpha1.ReasonInvalidSpec}, notReady},
			message: "spec.ingressSelector", event: authv1alpha1.ReasonInvalidSpec,
		},
		{
			name: "unsupported", ingress: ptr.To(otherClass),
			want:    []wantCondition{{authv1alpha1.ConditionIngressesWired, metav1.ConditionFalse, authv1alpha1.ReasonUnsupportedIngressClass}, notReady},
			message: `"example.com/other"`, event: authv1alpha1.ReasonUnsupportedIngressClass,
		},
		{
			name: "no-such-class", ingress: ptr.To("does-not-exist"),
			want:    []wantCondition{{authv1alpha1.ConditionIngressesWired, metav1.ConditionFalse, authv1alpha1.ReasonUnsupportedIngressClass}},
			message: `IngressClass "does-not-exist" does not exist`,
		},
		{
			name: "wired", ingress: ptr.To(nginxClass), wired: true,
			want: []wantCondition{{authv1alpha1.ConditionIngressesWired, metav1.ConditionTrue, authv1alpha1.ReasonWired}, ready},
		},
	}
	create(t, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "helm-release"},
		Type:       "helm.sh/release.v1",
		Data:       map[string][]byte{"jwks.json": []byte(idp.PublicJWKS())},
	})
	for _, tc := range cases {
		if tc.ingress != nil {
			create(t, ingressFixture(ns, "ing-"+tc.name, tc.ingress, map[string]string{"case": tc.name}))
		}
		mods := append([]func(*authv1alpha1.JWTPolicy){only(tc.name)}, tc.mods...)
		create(t, policyFixture(ns, tc.name, mods...))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.want {
				testenv.Eventually(t, 15*time.Second, w.typ+"="+w.reason, conditionIs(ns, tc.name, w.typ, w.status, w.reason))
			}
			p := getPolicy(t, ns, tc.name)
			if msg := getCondition(p.Status.Conditions, tc.want[0].typ).Message; !strings.Contains(msg, tc.message) {
				t.Errorf("%s message %q does not say %q", tc.want[0].typ, msg, tc.message)
			}
			if tc.event != "" {
				testenv.Eventually(t, 10*time.Second, "event "+tc.event, func() error {
					var evs eventsv1.EventList
					if err := env.Client.List(ctx, &evs, client.InNamespace(ns)); err != nil {
						return err
					}
					for _, e := range evs.Items {
						if e.Regarding.Name == tc.name && e.Reason == tc.event && e.Type == corev1.EventTypeWarning {
							return nil
						}
					}
					return fmt.Errorf("no Warning event %s among %d events", tc.event, len(evs.Items))
				})
			}
			if tc.ingress != nil {
				ing := getIngress(t, ns, "ing-"+tc.name)
				if got := ing.Annotations[AnnotationPolicy] == tc.name; got != tc.wired {
					t.Errorf("Ingress wired=%v, want %v (annotations %v)", got, tc.wired, ing.Annotations)
				}
			}
			if tc.decision != "" {
				h.waitDecision(t, ns, tc.name, idp.MustToken("RS256", idp.Claims("alice", time.Now())), false, tc.decision)
			}
		})
	}

	// The policy that does not compile is published as invalid: the server fails closed.
	snap := h.store.Load()
	if msg, ok := snap.Invalid(ns, "bad-rule"); !ok || !strings.Contains(msg, "spec.rules[0]") {
		t.Errorf("bad-rule in the snapshot: invalid=%v %q", ok, msg)
	}
	// Remote keys report their refresh time.
	if k := getPolicy(t, ns, "uri-ok").Status.Keys; len(k) != 1 || k[0].LastRefresh == nil || len(k[0].Kids) != 2 {
		t.Errorf("status.keys of a remote set: %+v", k)
	}
}
