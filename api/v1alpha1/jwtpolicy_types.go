package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PolicyMode says whether a policy denies requests or only records what it
// would have denied.
// +kubebuilder:validation:Enum=Enforce;Audit
type PolicyMode string

const (
	// ModeEnforce denies requests that fail the policy.
	ModeEnforce PolicyMode = "Enforce"
	// ModeAudit allows every request and marks the ones that would have been
	// denied with the X-Claimguard-Audit response header.
	ModeAudit PolicyMode = "Audit"
)

// Algorithm is a JWS signing algorithm (RFC 7518). "none" is never accepted.
// +kubebuilder:validation:Enum=RS256;RS384;RS512;PS256;PS384;PS512;ES256;ES384;ES512;EdDSA;HS256;HS384;HS512
type Algorithm string

// The signing algorithms claimguard verifies.
const (
	RS256 Algorithm = "RS256"
	RS384 Algorithm = "RS384"
	RS512 Algorithm = "RS512"
	PS256 Algorithm = "PS256"
	PS384 Algorithm = "PS384"
	PS512 Algorithm = "PS512"
	ES256 Algorithm = "ES256"
	ES384 Algorithm = "ES384"
	ES512 Algorithm = "ES512"
	EdDSA Algorithm = "EdDSA"
	HS256 Algorithm = "HS256"
	HS384 Algorithm = "HS384"
	HS512 Algorithm = "HS512"
)

// DefaultAlgorithms is the allow-list used when an issuer names none.
var DefaultAlgorithms = []Algorithm{RS256, ES256}

// ClaimOperator is how a required claim is compared with its values.
// +kubebuilder:validation:Enum=Exists;DoesNotExist;In;NotIn;ContainsAny;ContainsAll;Matches
type ClaimOperator string

// The operators of a required claim.
const (
	// OpExists holds when the claim is present and not null.
	OpExists ClaimOperator = "Exists"
	// OpDoesNotExist holds when the claim is absent.
	OpDoesNotExist ClaimOperator = "DoesNotExist"
	// OpIn holds when the claim's value, as JSON text without quotes, is one of the values.
	OpIn ClaimOperator = "In"
	// OpNotIn holds when the claim is present and its value is none of the values.
	OpNotIn ClaimOperator = "NotIn"
	// OpContainsAny holds when the claim (an array of strings or a
	// space-separated string) contains at least one of the values.
	OpContainsAny ClaimOperator = "ContainsAny"
	// OpContainsAll holds when the claim contains every one of the values.
	OpContainsAll ClaimOperator = "ContainsAll"
	// OpMatches holds when the claim, a string, matches any of the RE2 patterns.
	OpMatches ClaimOperator = "Matches"
)

// DefaultClockSkew is the leeway on exp, nbf and iat when clockSkew is absent.
const DefaultClockSkew = "30s"

// JWTPolicySpec says which tokens the guarded Ingresses and HTTPRoutes accept.
//
// +kubebuilder:validation:XValidation:rule="self.issuers.all(i, self.issuers.exists_one(j, j.issuer == i.issuer))",message="issuers: each issuer may appear only once",fieldPath=".issuers"
// +kubebuilder:validation:XValidation:rule="!has(self.forwardClaims) || self.forwardClaims.all(f, self.forwardClaims.exists_one(g, g.header.lowerAscii() == f.header.lowerAscii()))",message="forwardClaims: each header may be set by only one entry (header names are case-insensitive)",fieldPath=".forwardClaims"
type JWTPolicySpec struct {
	// ingressSelector chooses the networking.k8s.io/v1 Ingresses in this
	// namespace that the policy guards. Empty or absent: every Ingress in the
	// namespace. An Ingress chosen by two policies belongs to the oldest one
	// (then by name); the other reports a Conflict condition.
	// +optional
	IngressSelector *metav1.LabelSelector `json:"ingressSelector,omitempty"`

	// routeSelector chooses the Gateway API HTTPRoutes in this namespace that
	// the policy guards, with the same semantics as ingressSelector.
	// +optional
	RouteSelector *metav1.LabelSelector `json:"routeSelector,omitempty"`

	// mode is Enforce (the default), which denies failing requests, or Audit,
	// which lets every request through and marks the ones that would have
	// been denied with the response header "X-Claimguard-Audit: <reason>".
	// +kubebuilder:default=Enforce
	// +optional
	Mode PolicyMode `json:"mode,omitempty"`

	// issuers lists the token issuers this policy trusts. A token is matched
	// to an issuer by its "iss" claim, then verified with that issuer's keys,
	// algorithms and audiences. At least one is required.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	Issuers []Issuer `json:"issuers"`

	// requiredClaims must all hold for a request to be allowed. Each names a
	// claim by a dotted path into the token payload ("realm_access.roles");
	// a key that itself contains a dot is written with a backslash
	// ("https://example\.com/roles"). They are checked in order and the first
	// failure is reported: a missing claim as claim_missing, a present but
	// wrong one as claim_mismatch (HTTP 403).
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	RequiredClaims []RequiredClaim `json:"requiredClaims,omitempty"`

	// rules are CEL expressions over "claims" (the token payload as a map),
	// each of which must be true, for checks that requiredClaims cannot say:
	// "claims.exp - claims.iat <= 3600". A rule that is false or fails at run
	// time denies the request with rule_failed and the rule's message.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	Rules []Rule `json:"rules,omitempty"`

	// forwardClaims copies claims of an allowed token into headers of the
	// auth response, which the ingress controller adds to the request sent
	// upstream. Arrays are joined with ","; objects are sent as compact JSON;
	// an absent claim sets no header.
	// +kubebuilder:validation:MaxItems=32
	// +listType=atomic
	// +optional
	ForwardClaims []ForwardClaim `json:"forwardClaims,omitempty"`

	// tokenSources says where the token is read from, tried in order; the
	// first source that is present is the only one used. Absent: the
	// Authorization header with the "Bearer " scheme.
	// +kubebuilder:validation:MaxItems=8
	// +listType=atomic
	// +optional
	TokenSources []TokenSource `json:"tokenSources,omitempty"`

	// clockSkew is the leeway allowed on exp, nbf and iat, such as "30s"
	// (the default). "0s" allows none; at most "5m".
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:rule="duration(self) <= duration('5m')",message="clockSkew must be at most 5m"
	// +kubebuilder:default="30s"
	// +optional
	ClockSkew *metav1.Duration `json:"clockSkew,omitempty"`

	// publicPaths are request paths that need no token: an exact path
	// ("/healthz"), or every path under a prefix when it ends in "/"
	// ("/public/"). The path of the original request is percent-decoded once
	// and is never public when it holds "." or ".." segments, an encoded "/",
	// a "\" or ";", or repeated slashes.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=1024
	// +kubebuilder:validation:items:Pattern=`^/`
	// +listType=atomic
	// +optional
	PublicPaths []string `json:"publicPaths,omitempty"`
}

// Issuer is one trusted token issuer with its keys and expectations.
//
// +kubebuilder:validation:XValidation:rule="!has(self.algorithms) || !self.algorithms.exists(a, a.startsWith('HS')) || has(self.jwks.secretRef)",message="algorithms: HS256/HS384/HS512 need a shared secret, which only jwks.secretRef can hold",fieldPath=".algorithms"
type Issuer struct {
	// issuer must equal the token's "iss" claim exactly, such as
	// "https://idp.example.com/realms/shop".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Issuer string `json:"issuer"`

	// audiences: the token's "aud" (a string or an array of strings) must
	// contain at least one of them. Absent: "aud" is not checked.
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=256
	// +listType=atomic
	// +optional
	Audiences []string `json:"audiences,omitempty"`

	// algorithms is the allow-list of signing algorithms for this issuer.
	// Absent: RS256 and ES256. "none" is never accepted. HS256/384/512 are
	// allowed only with keys from jwks.secretRef. A key whose own "alg" is
	// set is used with that algorithm only.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=13
	// +listType=set
	// +optional
	Algorithms []Algorithm `json:"algorithms,omitempty"`

	// requireExpiry refuses a token without "exp" when true (the default).
	// +kubebuilder:default=true
	// +optional
	RequireExpiry *bool `json:"requireExpiry,omitempty"`

	// jwks says where the issuer's public keys come from: exactly one of
	// uri, discovery, secretRef or inline.
	JWKS JWKSSource `json:"jwks"`
}

// JWKSSource names where an issuer's JSON Web Key Set comes from. Exactly one
// field is set.
//
// +kubebuilder:validation:XValidation:rule="(has(self.uri) ? 1 : 0) + (has(self.discovery) && self.discovery ? 1 : 0) + (has(self.secretRef) ? 1 : 0) + (has(self.inline) ? 1 : 0) >= 1",message="jwks: set one of uri, discovery, secretRef or inline"
// +kubebuilder:validation:XValidation:rule="(has(self.uri) ? 1 : 0) + (has(self.discovery) && self.discovery ? 1 : 0) + (has(self.secretRef) ? 1 : 0) + (has(self.inline) ? 1 : 0) <= 1",message="jwks: set only one of uri, discovery, secretRef or inline"
type JWKSSource struct {
	// uri is an https URL serving the key set, such as
	// "https://idp.example.com/realms/shop/protocol/openid-connect/certs".
	// It is fetched in the background and refreshed; a token with an unknown
	// "kid" triggers an early, rate-limited refresh.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:Pattern=`^https?://`
	// +optional
	URI string `json:"uri,omitempty"`

	// discovery, when true, reads "<issuer>/.well-known/openid-configuration"
	// and fetches the key set from its "jwks_uri".
	// +optional
	Discovery bool `json:"discovery,omitempty"`

	// secretRef names a key of a Secret in the policy's namespace whose value
	// is a JWKS document. The only source that may hold HMAC (oct) secrets.
	// +optional
	SecretRef *SecretKeyRef `json:"secretRef,omitempty"`

	// inline is a JWKS document as JSON text: {"keys":[...]}. Public keys
	// only; a set holding private key material is refused as a whole.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=65536
	// +optional
	Inline string `json:"inline,omitempty"`
}

// SecretKeyRef names one key of a Secret in the policy's namespace.
type SecretKeyRef struct {
	// name of the Secret.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// key within the Secret's data, such as "jwks.json".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// RequiredClaim is one condition on a claim of the token.
//
// +kubebuilder:validation:XValidation:rule="self.operator in ['Exists', 'DoesNotExist'] || (has(self.values) && size(self.values) > 0)",message="values: required for operators In, NotIn, ContainsAny, ContainsAll and Matches",fieldPath=".values"
// +kubebuilder:validation:XValidation:rule="!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0",message="values: must be empty for operators Exists and DoesNotExist",fieldPath=".values"
type RequiredClaim struct {
	// claim is a dotted path into the token payload, such as "sub" or
	// "realm_access.roles". Write a dot that is part of a key as "\."
	// ("https://example\.com/roles").
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Claim string `json:"claim"`

	// operator is one of:
	// Exists (present and not null); DoesNotExist (absent);
	// In / NotIn (the value, a string, number or bool compared as its JSON
	// text without quotes, is / is not one of values);
	// ContainsAny / ContainsAll (the claim, an array of strings or a
	// space-separated string such as OAuth "scope", holds at least one / all
	// of values); Matches (a string matching any of the RE2 patterns in
	// values; anchor them yourself with ^ and $).
	Operator ClaimOperator `json:"operator"`

	// values to compare with; required for every operator but Exists and
	// DoesNotExist, and forbidden for those two.
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=1024
	// +listType=atomic
	// +optional
	Values []string `json:"values,omitempty"`
}

// Rule is a CEL expression over the token's claims that must be true.
type Rule struct {
	// expression is a CEL expression over "claims", the token payload as a
	// map, that must evaluate to true: "claims.exp - claims.iat <= 3600",
	// "'admin' in claims.groups". It is compiled and type-checked when the
	// policy is stored and cost-limited when it runs.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=4096
	Expression string `json:"expression"`

	// message is the human explanation returned when the rule fails, such
	// as "token lifetime longer than one hour". Never include secrets.
	// +kubebuilder:validation:MaxLength=256
	// +optional
	Message string `json:"message,omitempty"`
}

// ForwardClaim copies one claim into one header sent upstream.
type ForwardClaim struct {
	// claim is a dotted path into the token payload, as in requiredClaims.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Claim string `json:"claim"`

	// header is the HTTP header name to set, such as "X-Auth-Subject".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[-!#$%&'*+.^_|~0-9A-Za-z]+$`
	Header string `json:"header"`
}

// TokenSource is one place a token can be read from: exactly one of header
// or cookie.
//
// +kubebuilder:validation:XValidation:rule="has(self.header) != has(self.cookie)",message="tokenSources: set exactly one of header or cookie"
type TokenSource struct {
	// header reads the token from a request header.
	// +optional
	Header *HeaderTokenSource `json:"header,omitempty"`

	// cookie reads the token from a cookie.
	// +optional
	Cookie *CookieTokenSource `json:"cookie,omitempty"`
}

// HeaderTokenSource reads a token from a request header.
type HeaderTokenSource struct {
	// name of the header, such as "Authorization".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[-!#$%&'*+.^_|~0-9A-Za-z]+$`
	Name string `json:"name"`

	// prefix is the scheme in front of the token, such as "Bearer ". It is
	// matched case-insensitively and must be followed by at least one space;
	// a header with another scheme counts as absent. Empty: the whole header
	// value is the token.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^([-!#$%&'*+.^_|~0-9A-Za-z]+ *)?$`
	// +optional
	Prefix string `json:"prefix,omitempty"`
}

// CookieTokenSource reads a token from a cookie.
type CookieTokenSource struct {
	// name of the cookie, such as "access_token".
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[-!#$%&'*+.^_|~0-9A-Za-z]+$`
	Name string `json:"name"`
}

// IssuerKeys reports the keys loaded for one issuer.
type IssuerKeys struct {
	// issuer is the issuer these keys belong to.
	Issuer string `json:"issuer"`

	// kids are the key ids currently served for this issuer ("" for a key
	// without a kid).
	// +kubebuilder:validation:MaxItems=64
	// +listType=atomic
	// +optional
	Kids []string `json:"kids,omitempty"`

	// skipped counts keys of the set that cannot verify tokens and were left
	// out (encryption keys, weak or malformed keys); see the message.
	// +optional
	Skipped int32 `json:"skipped,omitempty"`

	// lastRefresh is when the key set was last loaded successfully.
	// +optional
	LastRefresh *metav1.Time `json:"lastRefresh,omitempty"`

	// message says why keys are unavailable or were skipped, if they were.
	// +kubebuilder:validation:MaxLength=1024
	// +optional
	Message string `json:"message,omitempty"`
}

// JWTPolicyStatus is what the controller observed and did.
type JWTPolicyStatus struct {
	// observedGeneration is the metadata.generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (the policy is enforced), KeysLoaded,
	// IngressesWired and Conflict.
	// +kubebuilder:validation:MaxItems=16
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// boundIngresses is how many Ingresses this policy guards.
	// +optional
	BoundIngresses int32 `json:"boundIngresses"`

	// boundRoutes is how many HTTPRoutes this policy guards.
	// +optional
	BoundRoutes int32 `json:"boundRoutes"`

	// keys lists, per issuer, the key ids in use and when they were loaded.
	// +kubebuilder:validation:MaxItems=16
	// +listType=atomic
	// +optional
	Keys []IssuerKeys `json:"keys,omitempty"`
}

// JWTPolicy guards the Ingresses and HTTPRoutes of its namespace with JWT
// verification: signature, issuer, audience, lifetime, required claims and
// CEL rules. Requests that fail are denied with 401 or 403 and a reason code.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=jwtp,categories=claimguard
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.spec.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Ingresses",type=integer,JSONPath=`.status.boundIngresses`
// +kubebuilder:printcolumn:name="Routes",type=integer,JSONPath=`.status.boundRoutes`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type JWTPolicy struct {
	metav1.TypeMeta `json:",inline"`

	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which tokens are accepted.
	// +required
	Spec JWTPolicySpec `json:"spec"`

	// status is written by the controller.
	// +optional
	Status JWTPolicyStatus `json:"status,omitempty"`
}

// JWTPolicyList is a list of JWTPolicy.
//
// +kubebuilder:object:root=true
type JWTPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []JWTPolicy `json:"items"`
}

func init() {
	SchemeBuilder.Register(&JWTPolicy{}, &JWTPolicyList{})
}
