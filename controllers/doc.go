// Package controllers turns JWTPolicies into served snapshots (on every replica) and, on the
// leader, into status, Events and the wiring of the Ingresses they select.
package controllers
