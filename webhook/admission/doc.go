// Package admission holds claimguard's admission webhooks: the JWTPolicy defaulter and
// validator (a policy is checked by the same compile step as the reconciler before it is
// stored), and the Ingress guard, which wires a selected Ingress at admission and refuses
// changes that would take it out from under its policy.
package admission
