// Package e2e runs claimguard serve as a process behind real nginx and Caddy and checks the forward-auth contract end to end.
package e2e
