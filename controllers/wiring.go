package controllers

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/wiring"
)

// MiddlewareGVK is Traefik's Middleware kind.
var MiddlewareGVK = wiring.MiddlewareGVK

// MiddlewareName is the name of the Traefik Middleware of policy name.
func MiddlewareName(policy string) string { return wiring.MiddlewareName(policy) }

// needsApply reports whether applying desired would change ing: a value differs, claimguard
// does not own a field it wants (someone else set the same value), or claimguard owns a field
// it no longer wants.
func needsApply(ing *networkingv1.Ingress, desired map[string]string, owned map[string]bool) bool {
	for k, v := range desired {
		if cur, ok := ing.Annotations[k]; !ok || cur != v || !owned[k] {
			return true
		}
	}
	for k := range owned {
		if _, ok := desired[k]; !ok {
			return true
		}
	}
	return false
}

// ownedAnnotations returns the annotation keys the claimguard field manager owns on obj's
// metadata, read from managedFields (which the cache keeps only for claimguard's entries).
func ownedAnnotations(ing *networkingv1.Ingress) map[string]bool {
	out := map[string]bool{}
	for _, mf := range ing.ManagedFields {
		if mf.Manager != FieldManager || mf.FieldsV1 == nil || mf.Subresource != "" {
			continue
		}
		var fields struct {
			Metadata struct {
				Annotations map[string]json.RawMessage `json:"f:annotations"`
			} `json:"f:metadata"`
		}
		if err := json.Unmarshal(mf.FieldsV1.Raw, &fields); err != nil {
			continue
		}
		for k := range fields.Metadata.Annotations {
			if name, ok := strings.CutPrefix(k, "f:"); ok {
				out[name] = true
			}
		}
	}
	return out
}

// wiredTo returns the policy an Ingress is wired to according to its annotations, "" if none.
func wiredTo(ing *networkingv1.Ingress) string { return ing.Annotations[AnnotationPolicy] }

// isWired reports whether ing carries owner's complete wiring.
func isWired(opts WiringOptions, owner *authv1alpha1.JWTPolicy, ing *networkingv1.Ingress, kind wiring.Kind) bool {
	want := wiring.DesiredAnnotations(opts, owner, ing, kind, ownedAnnotations(ing))
	for k, v := range want {
		if ing.Annotations[k] != v {
			return false
		}
	}
	return true
}

// desiredMiddleware is the Traefik Middleware of policy p, owned by it so that it is garbage
// collected with the policy.
func desiredMiddleware(opts WiringOptions, p *authv1alpha1.JWTPolicy) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(MiddlewareGVK)
	u.SetNamespace(p.Namespace)
	u.SetName(MiddlewareName(p.Name))
	u.SetLabels(map[string]string{"app.kubernetes.io/managed-by": "claimguard", AnnotationPolicy: p.Name})
	u.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion:         authv1alpha1.GroupVersion.String(),
		Kind:               "JWTPolicy",
		Name:               p.Name,
		UID:                p.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}})
	fa := map[string]any{"address": opts.AuthURL(p.Namespace, p.Name)}
	if h := wiring.ForwardHeaders(p); len(h) > 0 {
		hs := make([]any, len(h))
		for i := range h {
			hs[i] = h[i]
		}
		fa["authResponseHeaders"] = hs
	}
	u.Object["spec"] = map[string]any{"forwardAuth": fa}
	return u
}

// middlewareUpToDate reports whether the Middleware in the cluster matches the desired one in
// everything claimguard sets.
func middlewareUpToDate(cur, want *unstructured.Unstructured) bool {
	if cur == nil {
		return false
	}
	curFA, _, _ := unstructured.NestedMap(cur.Object, "spec", "forwardAuth")
	wantFA, _, _ := unstructured.NestedMap(want.Object, "spec", "forwardAuth")
	if curFA["address"] != wantFA["address"] {
		return false
	}
	curH, _, _ := unstructured.NestedStringSlice(cur.Object, "spec", "forwardAuth", "authResponseHeaders")
	wantH, _, _ := unstructured.NestedStringSlice(want.Object, "spec", "forwardAuth", "authResponseHeaders")
	if !slices.Equal(curH, wantH) {
		return false
	}
	if !maps.Equal(cur.GetLabels(), mergeLabels(cur.GetLabels(), want.GetLabels())) {
		return false
	}
	for _, ref := range cur.GetOwnerReferences() {
		if ref.UID == want.GetOwnerReferences()[0].UID && ptr.Deref(ref.Controller, false) {
			return true
		}
	}
	return false
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, b)
	return out
}
