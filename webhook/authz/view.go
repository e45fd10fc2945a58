package authz

import (
	"sync/atomic"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
)

// view is the server's routing table for one snapshot: each policy with its
// metric series resolved ahead, so a request does one map lookup and touches
// no label machinery (CounterVec.WithLabelValues hashes and allocates).
type view struct {
	snap    *store.Snapshot
	entries map[store.Key]*entry
	// invalid are the policies of the snapshot that did not compile: they
	// answer policy_not_found, counted under their own names.
	invalid map[store.Key]*entry
}

// reasonIndex maps every reason code to a slot of entry's lazy counters.
var reasonIndex = func() map[policy.Reason]int {
	m := map[policy.Reason]int{}
	for i, r := range policy.AllReasons() {
		m[r] = i
	}
	return m
}()

// entry is one policy in the routing table.
type entry struct {
	key    store.Key
	policy *policy.Policy // nil for an invalid policy
	cause  string         // why an invalid policy did not compile

	allow, public prometheus.Counter
	// deny and audit counters by reason, created on first use: most
	// policies see a handful of reasons, and a series per code and policy
	// up front would bloat every scrape.
	deny, audit []atomic.Pointer[counterBox]
	vec         *prometheus.CounterVec
}

type counterBox struct{ c prometheus.Counter }

func newEntry(m *Metrics, k store.Key, p *policy.Policy) *entry {
	e := &entry{key: k, policy: p, vec: m.decisions}
	n := len(reasonIndex)
	e.deny, e.audit = make([]atomic.Pointer[counterBox], n), make([]atomic.Pointer[counterBox], n)
	if p != nil {
		e.allow = m.decisions.WithLabelValues(k.Namespace, k.Name, OutcomeAllow, "")
		e.public = m.decisions.WithLabelValues(k.Namespace, k.Name, OutcomePublic, "")
	}
	return e
}

// counter returns the counter of a denial or Audit would-be denial.
func (e *entry) counter(audit bool, r policy.Reason) prometheus.Counter {
	i, ok := reasonIndex[r]
	if !ok {
		// Not a contract code: cannot happen with the engine's decisions;
		// count it without a reason rather than invent a label value.
		r, i = "", -1
	}
	slots, outcome := e.deny, OutcomeDeny
	if audit {
		slots, outcome = e.audit, OutcomeAudit
	}
	if i >= 0 {
		if b := slots[i].Load(); b != nil {
			return b.c
		}
	}
	c := e.vec.WithLabelValues(e.key.Namespace, e.key.Name, outcome, string(r))
	if i >= 0 {
		slots[i].Store(&counterBox{c})
	}
	return c
}

// current returns the view of the store's current snapshot. The store's
// OnPublish hook rebuilds it eagerly; the check here covers the instant
// between the store's swap and that hook.
func (s *Server) current() *view {
	snap := s.store.Load()
	if v := s.view.Load(); v != nil && v.snap == snap {
		return v
	}
	return s.rebuild(snap)
}

// rebuild makes the view for snap, reusing the entries (and their counters)
// of unchanged policies and deleting the series of removed ones.
func (s *Server) rebuild(snap *store.Snapshot) *view {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	old := s.view.Load()
	if old != nil && old.snap == snap {
		return old
	}
	if snap != nil && old != nil && old.snap != nil && snap.Revision < old.snap.Revision {
		// A hook running late with an older snapshot: keep the newer view.
		return old
	}
	v := &view{snap: snap, entries: map[store.Key]*entry{}, invalid: map[store.Key]*entry{}}
	for _, p := range snap.Policies() {
		k := store.Key{Namespace: p.Namespace(), Name: p.Name()}
		if old != nil {
			if e := old.entries[k]; e != nil && e.policy == p {
				v.entries[k] = e
				continue
			}
		}
		v.entries[k] = newEntry(s.metrics, k, p)
	}
	for _, k := range snap.InvalidKeys() {
		e := newEntry(s.metrics, k, nil)
		e.cause, _ = snap.Invalid(k.Namespace, k.Name)
		v.invalid[k] = e
	}
	if old != nil {
		for _, m := range []map[store.Key]*entry{old.entries, old.invalid} {
			for k := range m {
				if v.entries[k] == nil && v.invalid[k] == nil {
					s.metrics.forgetPolicy(k)
				}
			}
		}
	}
	if snap != nil {
		s.metrics.observeSnapshot(snap)
	}
	s.view.Store(v)
	return v
}

// headerMemo holds the []string values of forwarded claim headers, keyed by
// the engine's shared Header slice. A cached decision hands out the same
// read-only slice on every hit, so the first request builds the values and
// later ones reuse them: writing http.Header needs a []string per header, and
// allocating it per request would be the hot path's only allocation.
//
// It is a direct-mapped table of memoSlots entries indexed by the slice's
// address: a hit is one atomic load and a pointer comparison, a miss (a new
// token) replaces the slot. An entry keeps its key slice alive, so an address
// cannot be reused by another slice while an entry names it. The values are
// shared by concurrent responses and never modified: net/http only reads
// them, and each is capped (len == cap) so an Add by anyone copies instead of
// writing into the shared array.
type headerMemo struct {
	slots [memoSlots]atomic.Pointer[memoEntry]
}

type memoEntry struct {
	key  *policy.Header
	vals [][]string
}

const memoBits = 12
const memoSlots = 1 << memoBits

func (h *headerMemo) values(hs []policy.Header) [][]string {
	key := &hs[0]
	// Fibonacci hashing of the address; the low bits are alignment.
	slot := &h.slots[(uint64(uintptr(unsafe.Pointer(key)))>>4)*0x9E3779B97F4A7C15>>(64-memoBits)]
	if e := slot.Load(); e != nil && e.key == key && len(e.vals) == len(hs) {
		return e.vals
	}
	backing := make([]string, len(hs))
	vals := make([][]string, len(hs))
	for i := range hs {
		backing[i] = hs[i].Value
		vals[i] = backing[i : i+1 : i+1]
	}
	slot.Store(&memoEntry{key: key, vals: vals})
	return vals
}
