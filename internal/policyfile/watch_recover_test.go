package policyfile

import (
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/claimguard/claimguard/internal/testenv"
)

// TestWatcherRecoversToSameContent: after a failed reload, the file put back exactly as it
// was in force is a successful reload (OnReload(nil)), so the reload-success gauge does not
// stay at 0 although nothing new is published. Found by the reliability suite (a writer that
// truncates the file and writes it again whole).
func TestWatcherRecoversToSameContent(t *testing.T) {
	file := t.TempDir() + "/policies.yaml"
	good := policyDoc("shop", "a", "")
	testenv.WriteAtomic(t, file, good)
	var mu sync.Mutex
	var reloads []error
	rec := &recorder{}
	w := &Watcher{
		File:      file,
		Publisher: rec,
		Log:       logr.Discard(),
		OnReload: func(err error) {
			mu.Lock()
			reloads = append(reloads, err)
			mu.Unlock()
		},
		Debounce: 50 * time.Millisecond,
		Poll:     200 * time.Millisecond,
	}
	runWatcher(t, w)
	got := func() []error {
		mu.Lock()
		defer mu.Unlock()
		return append([]error(nil), reloads...)
	}

	testenv.WriteAtomic(t, file, "") // truncated
	waitFor(t, "the empty file to be reported", func() bool { return len(got()) == 1 })
	if got()[0] == nil {
		t.Fatal("an empty policy file was reported as a successful reload")
	}
	testenv.WriteAtomic(t, file, good)
	waitFor(t, "the restored file to be reported", func() bool { return len(got()) == 2 })
	if err := got()[1]; err != nil {
		t.Errorf("restoring the file in force reported %v, want a successful reload", err)
	}
	time.Sleep(500 * time.Millisecond) // several polls
	if n := len(got()); n != 2 {
		t.Errorf("%d reloads reported, want 2: an unchanged file is reported once, when it recovers", n)
	}
	if rec.count() != 1 {
		t.Errorf("%d snapshots published, want only the first: the content in force did not change", rec.count())
	}
}
