package testenv

import (
	"testing"
	"time"
)

// PollInterval is how often Poll and Eventually call their condition.
const PollInterval = 50 * time.Millisecond

// Poll calls cond every PollInterval until it returns nil or timeout passes. It returns how
// long that took and cond's last error (nil when it came true).
func Poll(timeout time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return time.Since(start), err
		}
		time.Sleep(PollInterval)
	}
}

// Eventually is Poll that fails the test, naming what it waited for and cond's last error,
// when cond is not true within timeout. It returns how long it waited.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	took, err := Poll(timeout, cond)
	if err != nil {
		t.Fatalf("%s: not within %s: %v", what, timeout, err)
	}
	return took
}
