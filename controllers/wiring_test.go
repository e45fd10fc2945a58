package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

func TestNeedsApply(t *testing.T) {
	want := map[string]string{"a": "1", "b": "2"}
	for _, tc := range []struct {
		name    string
		current map[string]string
		owned   []string
		apply   bool
	}{
		{"up to date", map[string]string{"a": "1", "b": "2", "user": "x"}, []string{"a", "b"}, false},
		{"value differs", map[string]string{"a": "1", "b": "3"}, []string{"a", "b"}, true},
		{"missing", map[string]string{"a": "1"}, []string{"a", "b"}, true},
		{"same value, someone else's field", map[string]string{"a": "1", "b": "2"}, []string{"a"}, true},
		{"owns a field it no longer wants", map[string]string{"a": "1", "b": "2", "c": "3"}, []string{"a", "b", "c"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			owned := map[string]bool{}
			for _, k := range tc.owned {
				owned[k] = true
			}
			ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Annotations: tc.current}}
			if got := needsApply(ing, want, owned); got != tc.apply {
				t.Errorf("needsApply %v, want %v", got, tc.apply)
			}
		})
	}
}

func TestOwnedAnnotations(t *testing.T) {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{ManagedFields: []metav1.ManagedFieldsEntry{
		{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{"f:user":{}}}}`)}},
		{Manager: FieldManager, Operation: metav1.ManagedFieldsOperationApply, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{".":{},"f:auth.claimguard.dev/policy":{},"f:nginx.ingress.kubernetes.io/auth-url":{}}}}`)}},
		{Manager: FieldManager, Subresource: "status", FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{"f:status-only":{}}}}`)}},
		{Manager: FieldManager, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`not json`)}},
	}}}
	want := map[string]bool{AnnotationPolicy: true, AnnotationNginxAuthURL: true}
	if d := cmp.Diff(want, ownedAnnotations(ing)); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestSetConditionKeepsTransitionTime(t *testing.T) {
	p := &authv1alpha1.JWTPolicy{ObjectMeta: metav1.ObjectMeta{Generation: 2}}
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 500, time.UTC)
	setCondition(p, t0, authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysLoaded, "")
	first := p.Status.Conditions[0]
	if !first.LastTransitionTime.Time.Equal(t0.Truncate(time.Second)) || first.ObservedGeneration != 2 {
		t.Fatalf("first set: %+v", first)
	}
	p.Generation = 3
	setCondition(p, t0.Add(time.Minute), authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysStale, "m")
	if c := p.Status.Conditions[0]; !c.LastTransitionTime.Equal(&first.LastTransitionTime) || c.Reason != authv1alpha1.ReasonKeysStale || c.ObservedGeneration != 3 {
		t.Errorf("same status must keep the transition time: %+v", c)
	}
	setCondition(p, t0.Add(time.Hour), authv1alpha1.ConditionKeysLoaded, metav1.ConditionFalse, authv1alpha1.ReasonKeysUnavailable, strings.Repeat("x", 5000))
	c := p.Status.Conditions[0]
	if !c.LastTransitionTime.Time.Equal(t0.Add(time.Hour).Truncate(time.Second)) {
		t.Errorf("a flip must move the transition time: %v", c.LastTransitionTime)
	}
	if len(c.Message) > maxMessage || !strings.HasSuffix(c.Message, " ...") {
		t.Errorf("message not bounded: %d bytes", len(c.Message))
	}
	if len(p.Status.Conditions) != 1 {
		t.Errorf("condition duplicated: %v", p.Status.Conditions)
	}
}

func TestSummarizeReady(t *testing.T) {
	now := time.Unix(1700000000, 0)
	cond := func(typ string, s metav1.ConditionStatus, reason string) metav1.Condition {
		return metav1.Condition{Type: typ, Status: s, Reason: reason, Message: "m-" + reason}
	}
	good := []metav1.Condition{
		cond(authv1alpha1.ConditionKeysLoaded, metav1.ConditionTrue, authv1alpha1.ReasonKeysLoaded),
		cond(authv1alpha1.ConditionIngressesWired, metav1.ConditionTrue, authv1alpha1.ReasonWired),
		cond(authv1alpha1.ConditionConflict, metav1.ConditionFalse, authv1alpha1.ReasonNoConflict),
	}
	with := func(c metav1.Condition) []metav1.Condition {
		out := append([]metav1.Condition(nil), good...)
		for i := range out {
			if out[i].Type == c.Type {
				out[i] = c
			}
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		conds      []metav1.Condition
		compileErr string
		status     metav1.ConditionStatus
		reason     string
		message    string
	}{
		{"all good", good, "", metav1.ConditionTrue, authv1alpha1.ReasonCompiled, ""},
		{"does not compile", good, "spec.rules[0]: bad", metav1.ConditionFalse, authv1alpha1.ReasonInvalidSpec, "spec.rules[0]: bad"},
		{"keys loading", with(cond(authv1alpha1.ConditionKeysLoaded, metav1.ConditionUnknown, authv1alpha1.ReasonKeysLoading)), "", metav1.ConditionUnknown, authv1alpha1.ReasonNotReady, "KeysLoaded (KeysLoading): m-KeysLoading"},
		{"conflict", with(cond(authv1alpha1.ConditionConflict, metav1.ConditionTrue, authv1alpha1.ReasonConflictingPolicy)), "", metav1.ConditionFalse, authv1alpha1.ReasonNotReady, "Conflict (ConflictingPolicy)"},
		{"false beats unknown", append(with(cond(authv1alpha1.ConditionKeysLoaded, metav1.ConditionUnknown, authv1alpha1.ReasonKeysLoading))[:1],
			cond(authv1alpha1.ConditionIngressesWired, metav1.ConditionFalse, authv1alpha1.ReasonWiringFailed), good[2]), "", metav1.ConditionFalse, authv1alpha1.ReasonNotReady, "IngressesWired (WiringFailed)"},
		{"missing condition", good[:2], "", metav1.ConditionUnknown, authv1alpha1.ReasonNotReady, "Conflict is not yet known"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &authv1alpha1.JWTPolicy{}
			p.Status.Conditions = tc.conds
			summarizeReady(p, now, tc.compileErr)
			c := getCondition(p.Status.Conditions, authv1alpha1.ConditionReady)
			if c == nil || c.Status != tc.status || c.Reason != tc.reason || !strings.Contains(c.Message, tc.message) {
				t.Errorf("Ready %+v, want %s/%s with %q", c, tc.status, tc.reason, tc.message)
			}
		})
	}
}

func TestErrorSummaryAndTruncate(t *testing.T) {
	errs := field.ErrorList{
		field.Invalid(field.NewPath("spec", "rules").Index(0), "x", "does not compile"),
		field.Required(field.NewPath("spec", "issuers"), "at least one"),
	}
	if got := errorSummary(errs, 1024); !strings.Contains(got, "spec.rules[0]") || !strings.Contains(got, "; spec.issuers") {
		t.Errorf("errorSummary %q", got)
	}
	s := strings.Repeat("é", 600) // 1200 bytes
	got := truncate(s, 101)
	if len(got) > 101 || !strings.HasSuffix(got, " ...") || !strings.HasPrefix(s, strings.TrimSuffix(got, " ...")) {
		t.Errorf("truncate cut a rune or overran: %d bytes %q", len(got), got)
	}
	if truncate("short", 10) != "short" {
		t.Error("truncate changed a short string")
	}
}

func TestListNames(t *testing.T) {
	if got := listNames([]string{"a", "b"}); got != "a, b" {
		t.Errorf("%q", got)
	}
	if got := listNames([]string{"1", "2", "3", "4", "5", "6", "7"}); got != "1, 2, 3, 4, 5 and 2 more" {
		t.Errorf("%q", got)
	}
}

func TestCacheBehind(t *testing.T) {
	r := &JWTPolicyReconciler{}
	p := func(rv string) *authv1alpha1.JWTPolicy {
		return &authv1alpha1.JWTPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders", ResourceVersion: rv}}
	}
	if r.cacheBehind(p("5")) {
		t.Error("behind without any write")
	}
	r.wrote(p("100"))
	for _, tc := range []struct {
		rv     string
		behind bool
	}{
		{"99", true}, {"9", true}, {"99", true}, // still waiting: the entry stays
		{"100", false}, // caught up: the entry goes
		{"99", false},  // nothing recorded any more
	} {
		if got := r.cacheBehind(p(tc.rv)); got != tc.behind {
			t.Errorf("rv %s after a write at 100: behind=%v, want %v", tc.rv, got, tc.behind)
		}
	}
	r.wrote(p("100"))
	if r.cacheBehind(p("not-a-number")) {
		t.Error("an opaque resourceVersion must not block passes")
	}
}

func TestRetryOrTerminal(t *testing.T) {
	invalid := fmt.Errorf("apply Middleware: %w", apierrors.NewInvalid(schema.GroupKind{Group: "traefik.io", Kind: "Middleware"}, "x", nil))
	conflict := apierrors.NewConflict(schema.GroupResource{Resource: "ingresses"}, "web", errors.New("busy"))
	terminal := reconcile.TerminalError(nil)
	for _, tc := range []struct {
		name     string
		errs     []error
		nilErr   bool
		terminal bool
	}{
		{"none", []error{nil, nil}, true, false},
		{"transient", []error{conflict}, false, false},
		{"invalid only", []error{invalid}, false, true},
		{"invalid and transient: retry", []error{invalid, conflict}, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := retryOrTerminal(tc.errs)
			if (err == nil) != tc.nilErr || errors.Is(err, terminal) != tc.terminal {
				t.Errorf("retryOrTerminal = %v (terminal %v), want nil=%v terminal=%v", err, errors.Is(err, terminal), tc.nilErr, tc.terminal)
			}
		})
	}
}
