package store

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/claimguard/claimguard/internal/policy"
)

// Key names a policy: its namespace and name.
type Key struct {
	Namespace, Name string
}

// String returns "namespace/name".
func (k Key) String() string { return k.Namespace + "/" + k.Name }

// Snapshot is an immutable set of compiled policies. Policies that failed to
// compile are kept as their error, so the server can fail closed with the
// cause in its log while the policy stays unknown to traffic.
type Snapshot struct {
	policies map[Key]*policy.Policy
	invalid  map[Key]string
	// Revision identifies the snapshot; it grows with every publish.
	Revision uint64
}

// NewSnapshot builds a snapshot from compiled policies and the errors of
// policies that did not compile. The maps are copied; callers may reuse theirs.
func NewSnapshot(policies []*policy.Policy, invalid map[Key]string) *Snapshot {
	s := &Snapshot{policies: make(map[Key]*policy.Policy, len(policies)), invalid: make(map[Key]string, len(invalid))}
	for _, p := range policies {
		s.policies[Key{p.Namespace(), p.Name()}] = p
	}
	for k, v := range invalid {
		s.invalid[k] = v
	}
	return s
}

// Get returns the compiled policy namespace/name, or nil.
func (s *Snapshot) Get(namespace, name string) *policy.Policy {
	if s == nil {
		return nil
	}
	return s.policies[Key{namespace, name}]
}

// Invalid returns why namespace/name did not compile, if it did not.
func (s *Snapshot) Invalid(namespace, name string) (string, bool) {
	if s == nil {
		return "", false
	}
	msg, ok := s.invalid[Key{namespace, name}]
	return msg, ok
}

// InvalidKeys returns the policies that did not compile, sorted.
func (s *Snapshot) InvalidKeys() []Key {
	if s == nil {
		return nil
	}
	out := make([]Key, 0, len(s.invalid))
	for k := range s.invalid {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Len is the number of compiled policies.
func (s *Snapshot) Len() int {
	if s == nil {
		return 0
	}
	return len(s.policies)
}

// Policies returns the compiled policies sorted by namespace and name.
func (s *Snapshot) Policies() []*policy.Policy {
	if s == nil {
		return nil
	}
	out := make([]*policy.Policy, 0, len(s.policies))
	for _, p := range s.policies {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace() != out[j].Namespace() {
			return out[i].Namespace() < out[j].Namespace()
		}
		return out[i].Name() < out[j].Name()
	})
	return out
}

// KeysReady reports whether every policy's key sets have loaded at least once.
func (s *Snapshot) KeysReady() bool {
	if s == nil {
		return false
	}
	for _, p := range s.policies {
		if !p.KeysReady() {
			return false
		}
	}
	return true
}

// Publisher is the feeding side of a Store: the file watcher and the
// informer-driven builder both publish whole snapshots through it.
type Publisher interface {
	Publish(*Snapshot)
}

// Store holds the current Snapshot. Load is lock-free; Publish swaps the
// pointer atomically, so a request sees either the old or the new snapshot,
// never a mix.
type Store struct {
	current  atomic.Pointer[Snapshot]
	revision atomic.Uint64

	// publishMu serialises Publish (stamp, swap, notify).
	publishMu sync.Mutex
	// mu guards published and listeners.
	mu        sync.Mutex
	published chan struct{} // closed at the first Publish
	listeners []func(*Snapshot)
}

var _ Publisher = (*Store)(nil)

// New returns an empty Store; until the first Publish every lookup misses
// (and the server fails closed).
func New() *Store {
	return &Store{published: make(chan struct{})}
}

// Load returns the current snapshot, nil before the first Publish.
func (s *Store) Load() *Snapshot { return s.current.Load() }

// Publish makes snap current and stamps its Revision. Concurrent Publish
// calls are serialised, so the current snapshot always carries the highest
// revision and listeners see snapshots in revision order. A listener must not
// call Publish.
func (s *Store) Publish(snap *Snapshot) {
	s.publishMu.Lock()
	defer s.publishMu.Unlock()
	snap.Revision = s.revision.Add(1)
	s.current.Store(snap)
	s.mu.Lock()
	select {
	case <-s.published:
	default:
		close(s.published)
	}
	listeners := s.listeners
	s.mu.Unlock()
	for _, l := range listeners {
		l(snap)
	}
}

// OnPublish registers fn to be called (synchronously, in Publish) with each
// new snapshot; used to update metrics.
func (s *Store) OnPublish(fn func(*Snapshot)) {
	s.mu.Lock()
	s.listeners = append(s.listeners, fn)
	s.mu.Unlock()
}

// Published reports whether a snapshot was ever published.
func (s *Store) Published() bool {
	select {
	case <-s.published:
		return true
	default:
		return false
	}
}

// WaitPublished blocks until the first Publish or until ctx ends. Once a
// snapshot was published it returns nil even when ctx has ended.
func (s *Store) WaitPublished(ctx context.Context) error {
	if s.Published() {
		return nil
	}
	select {
	case <-s.published:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
