// Package authztest mints keys, key sets and signed tokens for the tests and
// benchmarks of the forward-auth server, the serve and explain commands and
// the end-to-end suite. It signs with the standard library only, so the code
// under test (which verifies) shares nothing with the code that signs.
//
// It is test support: nothing in the product imports it.
package authztest
