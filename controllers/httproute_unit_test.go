package controllers

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// openAPIDoc is an OpenAPI v3 document of gateway.networking.k8s.io/v1 shaped as the API
// server publishes CRD schemas: the filter item reached through $ref and single-element allOf,
// enums of strings and numbers.
func openAPIDoc(typeEnum, externalAuth string) string {
	return `{"openapi":"3.0.0","components":{"schemas":{
  "io.k8s.networking.gateway.v1.GRPCRoute":{"x-kubernetes-group-version-kind":[{"group":"gateway.networking.k8s.io","version":"v1","kind":"GRPCRoute"}]},
  "io.k8s.networking.gateway.v1.HTTPRoute":{"type":"object",
    "x-kubernetes-group-version-kind":[{"group":"gateway.networking.k8s.io","kind":"HTTPRoute","version":"v1"}],
    "properties":{"spec":{"allOf":[{"$ref":"#/components/schemas/spec"}],"description":"d"}}},
  "spec":{"type":"object","properties":{"rules":{"type":"array","items":{"type":"object","properties":{
    "filters":{"type":"array","items":{"$ref":"#/components/schemas/filter"}}}}}}},
  "filter":{"type":"object","properties":{
    "requestRedirect":{"type":"object","properties":{"statusCode":{"type":"integer","enum":[301,302]}}},
    ` + externalAuth + `
    "type":{"type":"string","enum":[` + typeEnum + `]}}}
}}}`
}

func TestSchemaHasExternalAuth(t *testing.T) {
	standard := `"RequestHeaderModifier","RequestRedirect","URLRewrite","ExtensionRef","CORS"`
	experimental := standard + `,"ExternalAuth"`
	field := `"externalAuth":{"type":"object"},`
	for _, tc := range []struct {
		name string
		doc  string
		want bool
		err  string
	}{
		{"experimental channel", openAPIDoc(experimental, field), true, ""},
		{"standard channel", openAPIDoc(standard, ""), false, ""},
		{"the enum value without the field", openAPIDoc(experimental, ""), false, ""},
		{"no HTTPRoute", `{"components":{"schemas":{}}}`, false, "no HTTPRoute schema"},
		{"no filters", `{"components":{"schemas":{"r":{"x-kubernetes-group-version-kind":[{"group":"gateway.networking.k8s.io","version":"v1","kind":"HTTPRoute"}]}}}}`, false, "no spec.rules[].filters[]"},
		{"a reference loop", `{"components":{"schemas":{"r":{"x-kubernetes-group-version-kind":[{"group":"gateway.networking.k8s.io","version":"v1","kind":"HTTPRoute"}],"$ref":"#/components/schemas/r"}}}}`, false, "no spec.rules[].filters[]"},
		{"not JSON", `<html>`, false, "invalid character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := schemaHasExternalAuth([]byte(tc.doc))
			if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("schemaHasExternalAuth = %v, %v; want %v, error containing %q", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestSetWiredCondition(t *testing.T) {
	const url = "http://claimguard.claimguard-system.svc:8443/authz/shop/orders"
	ok := func(reason, msg string) wiringOutcome { return wiringOutcome{metav1.ConditionTrue, reason, msg} }
	bad := func(reason, msg string) wiringOutcome { return wiringOutcome{metav1.ConditionFalse, reason, msg} }
	nothingIng := ok(authv1alpha1.ReasonNothingSelected, "spec.ingressSelector matches no Ingress in namespace shop")
	for _, tc := range []struct {
		name            string
		ingress, routes wiringOutcome
		status          metav1.ConditionStatus
		reason, message string
	}{
		{"no Gateway API, nothing selected: the Ingress message alone", nothingIng, ok(authv1alpha1.ReasonNothingSelected, ""),
			metav1.ConditionTrue, authv1alpha1.ReasonNothingSelected, "spec.ingressSelector matches no Ingress in namespace shop"},
		{"both wired", ok(authv1alpha1.ReasonWired, "1 Ingress wired to "+url), ok(authv1alpha1.ReasonWired, "2 HTTPRoutes wired to "+url),
			metav1.ConditionTrue, authv1alpha1.ReasonWired, "1 Ingress wired to " + url + "; 2 HTTPRoutes wired to " + url},
		{"routes wired, no Ingress", nothingIng, ok(authv1alpha1.ReasonWired, "1 HTTPRoute wired to "+url),
			metav1.ConditionTrue, authv1alpha1.ReasonWired, "1 HTTPRoute wired to " + url},
		{"a route problem wins over wired Ingresses", ok(authv1alpha1.ReasonWired, "1 Ingress wired"), bad(authv1alpha1.ReasonExternalAuthUnsupported, "1 HTTPRoute is selected ..."),
			metav1.ConditionFalse, authv1alpha1.ReasonExternalAuthUnsupported, "1 HTTPRoute is selected ..."},
		{"two problems: the Ingress reason, both messages", bad(authv1alpha1.ReasonUnsupportedIngressClass, "a"), bad(authv1alpha1.ReasonWiringFailed, "b"),
			metav1.ConditionFalse, authv1alpha1.ReasonUnsupportedIngressClass, "a; b"},
		{"unknown", nothingIng, wiringOutcome{metav1.ConditionUnknown, authv1alpha1.ReasonNotReady, "the HTTPRoutes of the namespace could not be read"},
			metav1.ConditionUnknown, authv1alpha1.ReasonNotReady, "the HTTPRoutes of the namespace could not be read"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scope{policy: &authv1alpha1.JWTPolicy{}, now: time.Unix(1700000000, 0)}
			setWiredCondition(s, tc.ingress, tc.routes)
			c := getCondition(s.policy.Status.Conditions, authv1alpha1.ConditionIngressesWired)
			if c == nil || c.Status != tc.status || c.Reason != tc.reason || c.Message != tc.message {
				t.Errorf("IngressesWired %+v, want %s/%s %q", c, tc.status, tc.reason, tc.message)
			}
		})
	}
}
