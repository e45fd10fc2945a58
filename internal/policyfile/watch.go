package policyfile

import (
	"context"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/go-logr/logr"

	"github.com/claimguard/claimguard/internal/store"
)

// Watcher keeps a store fed from a policy file: it loads the file, publishes
// a snapshot, and publishes a new one whenever the file (or a secret file it
// names) changes. An invalid edit is logged line by line and the last good
// snapshot stays in force.
type Watcher struct {
	// File is the policy file.
	File string
	// Options compile the policies.
	Options Options
	// Publisher receives every good snapshot.
	Publisher store.Publisher
	// Log receives one line per reload and one per problem of a bad file.
	Log logr.Logger
	// OnReload, when set, is called after every reload attempt with its
	// outcome (nil: published), for metrics.
	OnReload func(err error)
	// Debounce is how long the file must stay quiet after a change before it
	// is read: an editor's save or a non-atomic write is several events,
	// and reading in the middle of one would see half a file. Default 200ms.
	Debounce time.Duration
	// Poll is the backstop interval: the inputs are re-hashed this often in
	// case an event was missed (network file systems, a directory replaced
	// by a symlink swap that was not watched). Default 5s.
	Poll time.Duration

	mu      sync.Mutex
	current *Compiled
	// failed and failedDigest remember the last bad content (Run's
	// goroutine only).
	failed       bool
	failedDigest [32]byte
}

func (w *Watcher) defaults() {
	if w.Debounce <= 0 {
		w.Debounce = 200 * time.Millisecond
	}
	if w.Poll <= 0 {
		w.Poll = 5 * time.Second
	}
}

// Load compiles the file and publishes it. It is the first load of serve:
// its error (an *Error with one line per problem) should end the process.
func (w *Watcher) Load() error {
	c, err := Load(w.File, w.Options)
	if err != nil {
		return err
	}
	w.publish(c)
	return nil
}

// Current returns the last compile that was published.
func (w *Watcher) Current() *Compiled {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.current
}

func (w *Watcher) publish(c *Compiled) {
	w.Publisher.Publish(store.NewSnapshot(c.Policies, nil))
	w.mu.Lock()
	w.current = c
	w.mu.Unlock()
}

// reload re-reads the inputs when their digest changed. A failure is logged
// once per distinct bad content, not at every poll.
func (w *Watcher) reload() {
	prev := w.Current()
	var secretFiles []string
	if prev != nil {
		secretFiles = prev.SecretFiles
	}
	sum, derr := Digest(w.File, secretFiles)
	if derr == nil {
		if prev != nil && sum == prev.Digest {
			w.recovered()
			return
		}
		if w.failed && sum == w.failedDigest {
			return
		}
	}
	c, err := load(w.File, w.Options, prev)
	if err == nil && prev != nil && c.Digest == prev.Digest {
		w.recovered()
		return
	}
	if err != nil {
		w.failed, w.failedDigest = true, sum
		if fe, ok := err.(*Error); ok {
			for _, line := range fe.Lines {
				w.Log.Error(nil, "Policy file is invalid, keeping the last good policies", "problem", line)
			}
		} else {
			w.Log.Error(err, "Policy file is invalid, keeping the last good policies")
		}
	} else {
		w.failed = false
		w.publish(c)
		w.Log.Info("Reloaded policy file", "file", w.File, "policies", len(c.Policies))
	}
	if w.OnReload != nil {
		w.OnReload(err)
	}
}

// recovered handles inputs that are back to exactly what is in force. After a
// failed reload that is a successful one: the failure reported to OnReload (the
// reload-success gauge at 0) no longer holds, although nothing new is
// published. Otherwise nothing happened and nothing is reported.
func (w *Watcher) recovered() {
	if !w.failed {
		return
	}
	w.failed = false
	w.Log.Info("Policy file is valid again, the policies in force are unchanged", "file", w.File)
	if w.OnReload != nil {
		w.OnReload(nil)
	}
}

// Run watches the file until ctx ends. Call Load first.
//
// It watches directories, not files: editors save by writing a new file and
// renaming it over the old one, and kubectl-style updates of a mounted
// ConfigMap or Secret swap a symlink, so a watch on the file itself would
// follow the old inode and miss every later change.
func (w *Watcher) Run(ctx context.Context) error {
	w.defaults()
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer fw.Close()
	watched := map[string]bool{}
	watchDirs := func() {
		dirs := []string{filepath.Dir(w.File)}
		if c := w.Current(); c != nil {
			for _, f := range c.SecretFiles {
				dirs = append(dirs, filepath.Dir(f))
			}
		}
		for _, d := range dirs {
			if watched[d] {
				continue
			}
			// A directory that does not exist yet is left to the poll.
			if err := fw.Add(d); err == nil {
				watched[d] = true
			}
		}
	}
	watchDirs()

	poll := time.NewTicker(w.Poll)
	defer poll.Stop()
	var debounce <-chan time.Time
	var timer *time.Timer
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return nil
			}
			w.Log.V(4).Info("Policy input changed", "path", ev.Name, "op", ev.Op.String())
			if timer == nil {
				timer = time.NewTimer(w.Debounce)
			} else {
				timer.Reset(w.Debounce)
			}
			debounce = timer.C
		case err, ok := <-fw.Errors:
			if !ok {
				return nil
			}
			w.Log.Error(err, "Watching the policy file failed; relying on polling")
		case <-debounce:
			debounce = nil
			w.reload()
			watchDirs()
		case <-poll.C:
			w.reload()
			watchDirs()
		}
	}
}
