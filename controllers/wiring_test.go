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
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

func TestAuthURL(t *testing.T) {
	o := DefaultWiringOptions()
	if got, want := o.AuthURL("shop", "orders-api"), "http://claimguard.claimguard-system.svc:8443/authz/shop/orders-api"; got != want {
		t.Errorf("AuthURL %q, want %q", got, want)
	}
	o.AuthServiceScheme, o.AuthServicePort, o.AuthServiceName, o.AuthServiceNamespace = "https", 443, "auth", "sec"
	if got, want := o.AuthURL("a", "b"), "https://auth.sec.svc:443/authz/a/b"; got != want {
		t.Errorf("AuthURL %q, want %q", got, want)
	}
}

func TestWiringOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*WiringOptions)
		want string
	}{
		{"defaults", func(*WiringOptions) {}, ""},
		{"no service", func(o *WiringOptions) { o.AuthServiceName = "" }, "--auth-service-name"},
		{"no namespace", func(o *WiringOptions) { o.AuthServiceNamespace = "" }, "--auth-service-namespace"},
		{"port", func(o *WiringOptions) { o.AuthServicePort = 70000 }, "--auth-service-port"},
		{"scheme", func(o *WiringOptions) { o.AuthServiceScheme = "ftp" }, "--auth-service-scheme"},
		{"controller twice", func(o *WiringOptions) { o.TraefikControllers = append(o.TraefikControllers, "k8s.io/ingress-nginx") }, "both"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultWiringOptions()
			tc.mod(&o)
			err := o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
}

func TestUserMiddlewares(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  []string
	}{
		{"", nil},
		{"shop-auth@kubernetescrd", []string{"shop-auth@kubernetescrd"}},
		{"shop-claimguard-orders@kubernetescrd, shop-auth@kubernetescrd ,", []string{"shop-auth@kubernetescrd"}},
		// Another namespace's claimguard-named Middleware is not ours to drop; nor is a file provider one.
		{"other-claimguard-x@kubernetescrd,shop-claimguard-x@file", []string{"other-claimguard-x@kubernetescrd", "shop-claimguard-x@file"}},
	} {
		if d := cmp.Diff(tc.want, userMiddlewares("shop", tc.value)); d != "" {
			t.Errorf("userMiddlewares(%q) (-want +got):\n%s", tc.value, d)
		}
	}
}

func ownerPolicy(headers ...string) *authv1alpha1.JWTPolicy {
	p := &authv1alpha1.JWTPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders"}}
	for _, h := range headers {
		p.Spec.ForwardClaims = append(p.Spec.ForwardClaims, authv1alpha1.ForwardClaim{Claim: "sub", Header: h})
	}
	return p
}

func TestDesiredAnnotations(t *testing.T) {
	o := DefaultWiringOptions()
	url := "http://claimguard.claimguard-system.svc:8443/authz/shop/orders"
	nginx := map[string]string{
		AnnotationPolicy: "orders", AnnotationNginxAuthURL: url,
		AnnotationNginxAuthKeepalive: "32", AnnotationNginxAuthKeepaliveRequests: "10000", AnnotationNginxAuthKeepaliveTimeout: "60",
	}
	withHeaders := merged(nginx, map[string]string{AnnotationNginxAuthResponseHeaders: "X-Auth-Subject,X-Auth-Roles"})
	for _, tc := range []struct {
		name    string
		owner   *authv1alpha1.JWTPolicy
		current map[string]string
		kind    ingressKind
		owned   []string
		want    map[string]string
	}{
		{"nginx without headers", ownerPolicy(), nil, kindNginx, nil, nginx},
		{"nginx headers canonical, deduplicated", ownerPolicy("x-auth-subject", "X-Auth-Roles", "X-AUTH-SUBJECT"), nil, kindNginx, nil, withHeaders},
		{"traefik first", ownerPolicy(), map[string]string{AnnotationTraefikRouterMiddlewares: "shop-auth@kubernetescrd"}, kindTraefik, nil,
			map[string]string{AnnotationPolicy: "orders", AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd,shop-auth@kubernetescrd"}},
		{"traefik takes over from another policy", ownerPolicy(), map[string]string{AnnotationTraefikRouterMiddlewares: "shop-claimguard-old@kubernetescrd,shop-auth@kubernetescrd"}, kindTraefik, nil,
			map[string]string{AnnotationPolicy: "orders", AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd,shop-auth@kubernetescrd"}},
		{"unwired, nothing owned", nil, map[string]string{AnnotationTraefikRouterMiddlewares: "shop-auth@kubernetescrd"}, kindTraefik, nil, map[string]string{}},
		{"unwired keeps the user's middlewares it owns", nil, map[string]string{AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd,shop-auth@kubernetescrd"}, kindTraefik,
			[]string{AnnotationTraefikRouterMiddlewares}, map[string]string{AnnotationTraefikRouterMiddlewares: "shop-auth@kubernetescrd"}},
		{"unwired, only ours", nil, map[string]string{AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd"}, kindTraefik,
			[]string{AnnotationTraefikRouterMiddlewares}, map[string]string{}},
		{"unsupported is unwired", ownerPolicy(), nil, kindUnsupported, nil, map[string]string{}},
		{"traefik to nginx keeps the user's middlewares", ownerPolicy(), map[string]string{AnnotationTraefikRouterMiddlewares: "shop-claimguard-orders@kubernetescrd,shop-auth@kubernetescrd"}, kindNginx,
			[]string{AnnotationTraefikRouterMiddlewares}, merged(nginx, map[string]string{AnnotationTraefikRouterMiddlewares: "shop-auth@kubernetescrd"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web", Annotations: tc.current}}
			owned := map[string]bool{}
			for _, k := range tc.owned {
				owned[k] = true
			}
			if d := cmp.Diff(tc.want, desiredAnnotations(o, tc.owner, ing, tc.kind, owned)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

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

func TestClassify(t *testing.T) {
	o := DefaultWiringOptions()
	o.TraefikControllers = append(o.TraefikControllers, "example.com/my-traefik")
	classes := []networkingv1.IngressClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "nginx"}, Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "public"}, Spec: networkingv1.IngressClassSpec{Controller: "example.com/my-traefik"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "haproxy"}, Spec: networkingv1.IngressClassSpec{Controller: "haproxy.org/ingress-controller"}},
	}
	def := func(name string) networkingv1.IngressClass {
		ic := classes[0]
		ic.Name = name
		ic.Annotations = map[string]string{annotationDefaultIngressClass: "true"}
		return ic
	}
	ing := func(class *string, legacy string) *networkingv1.Ingress {
		i := &networkingv1.Ingress{Spec: networkingv1.IngressSpec{IngressClassName: class}}
		if legacy != "" {
			i.Annotations = map[string]string{annotationLegacyIngressClass: legacy}
		}
		return i
	}
	for _, tc := range []struct {
		name    string
		classes []networkingv1.IngressClass
		ing     *networkingv1.Ingress
		kind    ingressKind
		problem string
	}{
		{"class name", classes, ing(ptr.To("nginx"), ""), kindNginx, ""},
		{"extra traefik controller name", classes, ing(ptr.To("public"), ""), kindTraefik, ""},
		{"unsupported controller", classes, ing(ptr.To("haproxy"), ""), kindUnsupported, `"haproxy.org/ingress-controller"`},
		{"missing class", classes, ing(ptr.To("gone"), ""), kindUnsupported, `IngressClass "gone" does not exist`},
		{"class name wins over the annotation", classes, ing(ptr.To("nginx"), "traefik"), kindNginx, ""},
		{"legacy annotation naming a class", classes, ing(nil, "public"), kindTraefik, ""},
		{"legacy annotation, well-known value", classes, ing(nil, "traefik"), kindTraefik, ""},
		{"legacy annotation, unknown value", classes, ing(nil, "istio"), kindUnsupported, "names no IngressClass"},
		{"no class, no default", classes, ing(nil, ""), kindUnsupported, "no default IngressClass"},
		{"no class, one default", append(classes[1:], def("std")), ing(nil, ""), kindNginx, ""},
		{"no class, two defaults", append(classes[1:], def("a"), def("b")), ing(nil, ""), kindUnsupported, "2 default IngressClasses (a, b)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := newClassifier(o, tc.classes).classify(tc.ing)
			if cl.kind != tc.kind || !strings.Contains(cl.problem, tc.problem) || (tc.problem == "") != (cl.problem == "") {
				t.Errorf("classify: kind %d problem %q, want kind %d problem containing %q", cl.kind, cl.problem, tc.kind, tc.problem)
			}
		})
	}
}

func TestOwnership(t *testing.T) {
	at := func(sec int64) metav1.Time { return metav1.NewTime(time.Unix(1700000000+sec, 0)) }
	pol := func(name string, created metav1.Time, sel *metav1.LabelSelector, deleting bool) authv1alpha1.JWTPolicy {
		p := authv1alpha1.JWTPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: created}}
		p.Spec.IngressSelector = sel
		if deleting {
			p.DeletionTimestamp = ptr.To(at(100))
		}
		return p
	}
	match := func(v string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{"app": v}}
	}
	bad := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "app", Operator: "In"}}}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}}
	for _, tc := range []struct {
		name     string
		policies []authv1alpha1.JWTPolicy
		want     string
	}{
		{"nobody", []authv1alpha1.JWTPolicy{pol("a", at(0), match("other"), false)}, ""},
		{"absent selector selects all", []authv1alpha1.JWTPolicy{pol("a", at(0), nil, false)}, "a"},
		{"empty selector selects all", []authv1alpha1.JWTPolicy{pol("a", at(0), &metav1.LabelSelector{}, false)}, "a"},
		{"oldest wins over name", []authv1alpha1.JWTPolicy{pol("a", at(5), nil, false), pol("z", at(1), match("web"), false)}, "z"},
		{"same age: name", []authv1alpha1.JWTPolicy{pol("b", at(1), nil, false), pol("a", at(1), nil, false)}, "a"},
		{"deleting policy owns nothing", []authv1alpha1.JWTPolicy{pol("old", at(0), nil, true), pol("new", at(9), nil, false)}, "new"},
		{"invalid selector selects nothing", []authv1alpha1.JWTPolicy{pol("old", at(0), bad, false), pol("new", at(9), nil, false)}, "new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if p := newOwnership(tc.policies).owner(ing); p != nil {
				got = p.Name
			}
			if got != tc.want {
				t.Errorf("owner %q, want %q", got, tc.want)
			}
		})
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
