// Package testenv starts a real Kubernetes API server and etcd (controller-runtime's envtest)
// for the tests of one package, with claimguard's CRDs installed.
package testenv
