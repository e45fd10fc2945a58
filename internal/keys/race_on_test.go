//go:build race

package keys

// raceEnabled: the race detector makes sync.Pool drop items at random, so pooled paths
// allocate under -race and allocation budgets are only asserted without it.
const raceEnabled = true
