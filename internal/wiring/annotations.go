package wiring

import (
	"net/http"
	"slices"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// ForwardHeaders are the canonical header names of a policy's forwardClaims, in spec order.
// They come from the spec, not the compiled policy, so a policy that does not compile is still
// wired (and denied by the server: fail closed) with the headers its author asked for.
func ForwardHeaders(p *authv1alpha1.JWTPolicy) []string {
	out := make([]string, 0, len(p.Spec.ForwardClaims))
	for _, fc := range p.Spec.ForwardClaims {
		h := http.CanonicalHeaderKey(fc.Header)
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// MiddlewareName is the name of the Traefik Middleware of policy name.
func MiddlewareName(policy string) string { return MiddlewarePrefix + policy }

// MiddlewareRef is the router.middlewares entry of the Middleware of policy in namespace.
func MiddlewareRef(namespace, policy string) string {
	return namespace + "-" + MiddlewareName(policy) + TraefikMiddlewareProvider
}

// IsClaimguardMiddleware reports whether a router.middlewares entry of an Ingress in namespace
// names a claimguard Middleware: "<namespace>-claimguard-*@kubernetescrd" is reserved.
func IsClaimguardMiddleware(namespace, entry string) bool {
	entry = strings.TrimSpace(entry)
	return strings.HasPrefix(entry, namespace+"-"+MiddlewarePrefix) && strings.HasSuffix(entry, TraefikMiddlewareProvider)
}

// MiddlewareEntries splits a router.middlewares value into its trimmed, non-empty entries.
func MiddlewareEntries(value string) []string {
	var out []string
	for _, e := range strings.Split(value, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// UserMiddlewares returns the router.middlewares entries that are not claimguard's, in order.
func UserMiddlewares(namespace, value string) []string {
	var out []string
	for _, e := range MiddlewareEntries(value) {
		if !IsClaimguardMiddleware(namespace, e) {
			out = append(out, e)
		}
	}
	return out
}

// DesiredAnnotations is the complete set of annotations claimguard applies to ing when owner
// guards it (owner nil: unwired). Applying this set with the claimguard field manager adds or
// updates these and removes every other annotation claimguard owned, so one apply moves an
// Ingress between policies, between controllers, or back to unwired, and an Ingress is never
// unwired in between. owned is the set of annotations claimguard owns now.
func DesiredAnnotations(opts Options, owner *authv1alpha1.JWTPolicy, ing *networkingv1.Ingress, kind Kind, owned map[string]bool) map[string]string {
	out := map[string]string{}
	rest := UserMiddlewares(ing.Namespace, ing.Annotations[AnnotationTraefikRouterMiddlewares])
	if owner == nil || kind == Unsupported {
		// Claimguard may own router.middlewares because it put its entry first; the user's
		// own entries stay when claimguard's goes.
		if owned[AnnotationTraefikRouterMiddlewares] && len(rest) > 0 {
			out[AnnotationTraefikRouterMiddlewares] = strings.Join(rest, ",")
		}
		return out
	}
	out[AnnotationPolicy] = owner.Name
	switch kind {
	case Nginx:
		out[AnnotationNginxAuthURL] = opts.AuthURL(owner.Namespace, owner.Name)
		if h := ForwardHeaders(owner); len(h) > 0 {
			out[AnnotationNginxAuthResponseHeaders] = strings.Join(h, ",")
		}
		out[AnnotationNginxAuthKeepalive] = NginxKeepalive
		out[AnnotationNginxAuthKeepaliveRequests] = NginxKeepaliveRequests
		out[AnnotationNginxAuthKeepaliveTimeout] = NginxKeepaliveTimeout
		if owned[AnnotationTraefikRouterMiddlewares] && len(rest) > 0 {
			out[AnnotationTraefikRouterMiddlewares] = strings.Join(rest, ",")
		}
	case Traefik:
		// Claimguard's Middleware runs first, so no user middleware sees an unchecked request.
		out[AnnotationTraefikRouterMiddlewares] = strings.Join(append([]string{MiddlewareRef(owner.Namespace, owner.Name)}, rest...), ",")
	}
	return out
}
