// Package certs keeps the admission webhooks' TLS material: a self-managed CA and serving
// certificate in a Secret, written and rotated by the leader, served by every replica, with the
// CA bundle injected into the webhook configurations.
package certs
