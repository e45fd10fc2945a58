// Package webhook holds claimguard's HTTP endpoints that ingress controllers
// and the API server call: the forward-auth server in webhook/authz and the
// admission webhooks in webhook/admission.
package webhook
