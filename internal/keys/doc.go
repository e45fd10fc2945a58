// Package keys turns JSON Web Key sets into checked verification keys, verifies JWS signatures with
// them, and keeps remote key sets (a JWKS URI or OIDC discovery) fresh in the background.
package keys
