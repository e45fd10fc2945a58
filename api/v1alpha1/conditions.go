package v1alpha1

// Condition types of a JWTPolicy.
const (
	// ConditionReady summarises the others: the policy compiled, its keys are
	// loaded and its Ingresses are wired, so it is being enforced.
	ConditionReady = "Ready"
	// ConditionKeysLoaded is True when every issuer has a usable key set.
	ConditionKeysLoaded = "KeysLoaded"
	// ConditionIngressesWired is True when every selected Ingress (and
	// HTTPRoute) points at the forward-auth endpoint of this policy.
	ConditionIngressesWired = "IngressesWired"
	// ConditionConflict is True when another policy owns an Ingress or
	// HTTPRoute this policy also selects.
	ConditionConflict = "Conflict"
)

// Condition reasons of a JWTPolicy. UpperCamel, as metav1.Condition requires.
const (
	// ReasonCompiled: the policy compiled and is served.
	ReasonCompiled = "Compiled"
	// ReasonInvalidSpec: the policy does not compile; the message names the field.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonKeysLoaded: every issuer's key set is loaded.
	ReasonKeysLoaded = "KeysLoaded"
	// ReasonKeysUnavailable: an issuer's key set has never loaded.
	ReasonKeysUnavailable = "KeysUnavailable"
	// ReasonKeysStale: a refresh failed and the last good keys are served.
	ReasonKeysStale = "KeysStale"
	// ReasonKeysLoading: a remote key set is being fetched for the first time.
	ReasonKeysLoading = "KeysLoading"
	// ReasonSecretNotFound: a secretRef names a Secret or key that does not exist.
	ReasonSecretNotFound = "SecretNotFound"
	// ReasonWired: every selected Ingress and HTTPRoute is wired.
	ReasonWired = "Wired"
	// ReasonNothingSelected: the selectors match no Ingress or HTTPRoute.
	ReasonNothingSelected = "NothingSelected"
	// ReasonWiringFailed: an Ingress or HTTPRoute could not be wired.
	ReasonWiringFailed = "WiringFailed"
	// ReasonUnsupportedIngressClass: a selected Ingress belongs to an
	// ingress controller claimguard cannot wire.
	ReasonUnsupportedIngressClass = "UnsupportedIngressClass"
	// ReasonMiddlewareCRDMissing: a selected Ingress is served by Traefik, but Traefik's
	// Middleware CRD (traefik.io/v1alpha1) is not installed, so it cannot be wired.
	ReasonMiddlewareCRDMissing = "MiddlewareCRDMissing"
	// ReasonExternalAuthUnsupported: HTTPRoutes are selected, but the installed HTTPRoute CRD
	// has no ExternalAuth filter (the standard channel of the Gateway API), so they cannot be
	// wired and are not guarded.
	ReasonExternalAuthUnsupported = "ExternalAuthUnsupported"
	// ReasonConflictingPolicy: another policy owns some selected objects.
	ReasonConflictingPolicy = "ConflictingPolicy"
	// ReasonNoConflict: no other policy selects the same objects.
	ReasonNoConflict = "NoConflict"
	// ReasonNotReady: a condition that Ready summarises is not True.
	ReasonNotReady = "NotReady"
)
