// Package reliability holds the fault, load and bad-input scenarios of claimguard that are
// short enough for `make test`: real `claimguard serve` and `claimguard manager` processes
// against a real API server (envtest), with identity providers that fail, stall or lie, policy
// files written badly, API servers that go away and managers killed with SIGKILL. The long
// scenarios (the wrk soak, 10,000 policies in a cluster, a million distinct tokens, long fuzz
// runs) live in hack/reliability; docs/reliability.md records every result.
package reliability
