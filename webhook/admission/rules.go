package admission

import (
	"fmt"
	"slices"
	"strings"

	"github.com/claimguard/claimguard/internal/wiring"
)

// nginxPrefix is the prefix of every ingress-nginx annotation.
const nginxPrefix = "nginx.ingress.kubernetes.io/"

// managedKeys are the annotations claimguard writes on a guarded Ingress, in the order the
// guard reports them.
var managedKeys = []string{
	wiring.AnnotationPolicy,
	wiring.AnnotationNginxAuthURL,
	wiring.AnnotationNginxAuthResponseHeaders,
	wiring.AnnotationNginxAuthKeepalive,
	wiring.AnnotationNginxAuthKeepaliveRequests,
	wiring.AnnotationNginxAuthKeepaliveTimeout,
	wiring.AnnotationTraefikRouterMiddlewares,
}

// managedWhy says what each managed annotation does for the guard, for refusal messages.
var managedWhy = map[string]string{
	wiring.AnnotationPolicy:                     "which names the policy that guards the Ingress",
	wiring.AnnotationNginxAuthURL:               "which sends every request to claimguard's forward-auth endpoint before it reaches the service",
	wiring.AnnotationNginxAuthResponseHeaders:   "which copies the policy's forwardClaims headers onto the request",
	wiring.AnnotationNginxAuthKeepalive:         "which keeps connections to the auth service open",
	wiring.AnnotationNginxAuthKeepaliveRequests: "which keeps connections to the auth service open",
	wiring.AnnotationNginxAuthKeepaliveTimeout:  "which keeps connections to the auth service open",
}

// allowedAuthAnnotations are the ingress-nginx auth-* annotations claimguard does not set but
// lets a guarded Ingress carry, because they cannot let a request past the check:
//   - auth-signin (and its redirect parameter) only turns the 401 of the auth subrequest into a
//     redirect to a sign-in page; the request itself never reaches the service.
//   - auth-tls-* adds client-certificate verification, a second check in front of the first.
//
// Their values are still checked for characters that would break out of nginx configuration
// (see unsafeValue), the injection route of CVE-2025-1097 and CVE-2025-24514.
func allowedAuthAnnotation(name string) bool {
	return name == "auth-signin" || name == "auth-signin-redirect-param" || strings.HasPrefix(name, "auth-tls-")
}

// bypassWhy explains, per ingress-nginx annotation, why a guarded Ingress may not carry it.
var bypassWhy = map[string]string{
	"auth-snippet":           "it adds raw nginx configuration to the auth subrequest, which can change what claimguard is asked or answer in its place",
	"configuration-snippet":  "it adds raw nginx configuration to the location, which can switch auth_request off or answer before the check",
	"server-snippet":         "it adds raw nginx configuration to the server, which can add a location the check does not cover",
	"auth-proxy-set-headers": "it sends headers of your choosing to the auth service, which can forge X-Original-URL and make any path look public",
	"auth-cache-key":         "it caches claimguard's verdict under a key you choose, so one user's allowed request could serve another user",
	"auth-method":            "it changes the method of the auth subrequest and is placed verbatim in nginx configuration",
}

// bypass reports whether an annotation would let requests past claimguard's check on a guarded
// Ingress (or carries an injection), and why. Managed annotations are judged elsewhere.
func bypass(key, value string) (string, bool) {
	name, ok := strings.CutPrefix(key, nginxPrefix)
	if !ok || slices.Contains(managedKeys, key) {
		return "", false
	}
	switch {
	case bypassWhy[name] != "":
		return bypassWhy[name], true
	case strings.HasSuffix(name, "-snippet"):
		return "it adds raw nginx configuration, which can bypass the check", true
	case name == "enable-global-auth" && strings.EqualFold(strings.TrimSpace(value), "false"):
		return `"false" turns off the cluster-wide external auth of ingress-nginx for this Ingress`, true
	case name == "satisfy" && strings.EqualFold(strings.TrimSpace(value), "any"):
		return `"any" lets an allow-list such as whitelist-source-range admit a request without the token check`, true
	case allowedAuthAnnotation(name):
		if c, bad := unsafeValue(value); bad {
			return fmt.Sprintf("its value holds %s, which nginx would read as configuration (an injection, as in CVE-2025-24514)", c), true
		}
		if name == "auth-signin" && !strings.HasPrefix(value, "https://") && !strings.HasPrefix(value, "http://") {
			return "its value must be an absolute http(s) URL of a sign-in page", true
		}
		return "", false
	case strings.HasPrefix(name, "auth-"):
		// Every other auth annotation (auth-type, auth-secret, auth-cache-duration,
		// auth-request-redirect, ...) is claimguard's territory on a guarded Ingress: their values
		// end up in nginx configuration (CVE-2025-24514, CVE-2025-1097) and the authentication of
		// the Ingress is the policy's.
		return "the authentication of a guarded Ingress is its JWTPolicy's, and auth-* values are placed in nginx configuration", true
	}
	return "", false
}

// unsafeValue returns a description of the first character of v that nginx configuration would
// treat as syntax: whitespace and control characters end a directive's argument, quotes,
// braces, semicolons and backslashes start new syntax. "$" stays allowed: nginx variables such
// as $escaped_request_uri are the documented use of auth-signin.
func unsafeValue(v string) (string, bool) {
	for _, r := range v {
		switch {
		case r < 0x20 || r == 0x7f:
			return "a control character", true
		case r == ' ':
			return "a space", true
		case strings.ContainsRune("\"'`;{}\\#", r):
			return fmt.Sprintf("%q", r), true
		}
	}
	return "", false
}
