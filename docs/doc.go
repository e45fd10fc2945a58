// Package docs holds the claimguard user documentation and the tests that
// keep it honest: every `claimguard explain` and `curl` example is run and
// its output compared with what the page shows, relative links must resolve,
// JWTPolicy examples must compile, and the metrics reference must list
// exactly the metrics the server registers.
package docs
