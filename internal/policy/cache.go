package policy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"hash"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// Cache is the verified-token cache shared by the policies of a process.
//
// Entries are keyed by HMAC-SHA256(per-process random key, policy prefix ||
// token) as a [32]byte: the token itself is never stored, and without the
// key a memory dump cannot be used to test guesses. The policy prefix holds
// namespace, name, revision and a fingerprint of Secret keys, so an edited
// policy (or rotated Secret) never sees its old verdicts.
//
// Only verdicts that depend on the token alone are stored: an allow, and the
// denials that come after a valid signature and the time checks
// (audience_mismatch, claim_*, rule_failed). Nothing before the signature is
// cached, so unauthenticated garbage cannot fill the cache, and nothing that
// depends on the key set's state (keys_unavailable, key_not_found) is.
// An entry never outlives the token's exp (nor MaxTTL, nor NoExpiryTTL for a
// token without exp), and is used only from the token's nbf/iat on.
//
// Memory is bounded by entry count and by approximate bytes; the map is
// sharded to keep lock hold times short, and eviction samples two entries
// and drops the one that expires first. Concurrent misses for the same key
// are collapsed so one token costs one signature check however many requests
// carry it at once.
type Cache struct {
	hmacKey     []byte
	hashers     [hasherSlots]hasherSlot
	nextHasher  atomic.Uint32
	shards      []cacheShard
	mask        uint8
	perShard    int
	bytesPerShd int64
	maxTTL      int64
	noExpTTL    int64
	group       singleflight.Group
}

// CacheOptions configure a Cache.
type CacheOptions struct {
	// MaxEntries bounds the number of entries (at least 1).
	MaxEntries int
	// MaxBytes bounds the approximate memory of the entries; 0: 2 KiB per entry.
	MaxBytes int64
	// MaxTTL bounds any entry's life, and so how long a verdict survives the
	// removal of its key from a remote set; 0: 10 minutes.
	MaxTTL time.Duration
	// NoExpiryTTL is the life of an entry for a token without exp; 0: 1 minute.
	NoExpiryTTL time.Duration
}

// CacheStats are the cache's counters.
type CacheStats struct {
	// Hits and Misses count lookups; Evictions counts entries dropped to stay
	// within bounds or because they expired; Collapsed counts misses answered
	// by a verification another request was already running.
	Hits, Misses, Evictions, Collapsed uint64
	// Size is the number of entries; Bytes their approximate memory.
	Size  int
	Bytes int64
}

type cacheShard struct {
	mu        sync.RWMutex
	m         map[[32]byte]*cacheEntry
	bytes     int64
	hits      atomic.Uint64
	misses    atomic.Uint64
	evictions atomic.Uint64
	collapsed atomic.Uint64
	_         [64]byte // keep shards' hot counters on separate cache lines
}

type cacheEntry struct {
	o       outcome
	expires int64 // Unix nanoseconds
	size    int64
}

// hasherSlots is the number of keyed HMAC states. A fixed array of
// mutex-guarded slots rather than a sync.Pool: a pool is emptied by every GC
// (and randomly under the race detector), and refilling it allocates on the
// hit path, which must not allocate. 32 slots keep contention negligible on
// any realistic core count; a lookup holds one for well under a microsecond.
const hasherSlots = 32

// hasherSlot is one keyed HMAC with its scratch buffers, so a lookup
// computes the digest without allocating.
type hasherSlot struct {
	mu  sync.Mutex
	h   hash.Hash
	buf []byte
	sum [sha256.Size]byte
	_   [32]byte // keep neighbouring slots' locks off one cache line
}

// NewCache returns a cache of at most maxEntries entries with default limits.
func NewCache(maxEntries int) *Cache {
	return NewCacheWithOptions(CacheOptions{MaxEntries: maxEntries})
}

// NewCacheWithOptions returns a cache with the given limits.
func NewCacheWithOptions(o CacheOptions) *Cache {
	if o.MaxEntries < 1 {
		o.MaxEntries = 1
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = int64(o.MaxEntries) * 2048
	}
	if o.MaxTTL <= 0 {
		o.MaxTTL = 10 * time.Minute
	}
	if o.NoExpiryTTL <= 0 {
		o.NoExpiryTTL = time.Minute
	}
	// Shard count: a power of two, at most 16, and never more than the
	// entry bound, so that per-shard limits add up to at most MaxEntries.
	n := 1
	for n*2 <= 16 && n*2 <= o.MaxEntries {
		n *= 2
	}
	c := &Cache{
		hmacKey:     make([]byte, 32),
		shards:      make([]cacheShard, n),
		mask:        uint8(n - 1),
		perShard:    o.MaxEntries / n,
		bytesPerShd: max(o.MaxBytes/int64(n), 1),
		maxTTL:      int64(o.MaxTTL),
		noExpTTL:    int64(o.NoExpiryTTL),
	}
	// crypto/rand.Read never fails (it panics if the OS has no entropy).
	_, _ = rand.Read(c.hmacKey)
	for i := range c.hashers {
		c.hashers[i].h = hmac.New(sha256.New, c.hmacKey)
		c.hashers[i].buf = make([]byte, 0, 1024)
	}
	for i := range c.shards {
		c.shards[i].m = make(map[[32]byte]*cacheEntry)
	}
	return c
}

// digest computes the cache key of a token for a policy prefix.
func (c *Cache) digest(prefix []byte, tok string) [32]byte {
	hs := c.lockHasher()
	hs.h.Reset()
	// One Write of a pooled buffer rather than two: writing the string
	// directly would need a []byte conversion, an allocation per lookup.
	hs.buf = append(append(hs.buf[:0], prefix...), tok...)
	hs.h.Write(hs.buf)
	hs.h.Sum(hs.sum[:0])
	d := hs.sum
	hs.mu.Unlock()
	return d
}

// lockHasher takes a free hasher slot, starting at a rotating index; when
// all are busy it waits for one.
func (c *Cache) lockHasher() *hasherSlot {
	start := c.nextHasher.Add(1)
	for i := uint32(0); i < hasherSlots; i++ {
		hs := &c.hashers[(start+i)%hasherSlots]
		if hs.mu.TryLock() {
			return hs
		}
	}
	hs := &c.hashers[start%hasherSlots]
	hs.mu.Lock()
	return hs
}

func (c *Cache) shard(d *[32]byte) *cacheShard { return &c.shards[d[0]&c.mask] }

// get returns the live entry for d, or nil.
func (c *Cache) get(d *[32]byte, now int64) *cacheEntry {
	s := c.shard(d)
	s.mu.RLock()
	e := s.m[*d]
	s.mu.RUnlock()
	if e == nil {
		s.misses.Add(1)
		return nil
	}
	if now >= e.expires {
		s.mu.Lock()
		if s.m[*d] == e {
			delete(s.m, *d)
			s.bytes -= e.size
			s.evictions.Add(1)
		}
		s.mu.Unlock()
		s.misses.Add(1)
		return nil
	}
	if now < e.o.nbfNano {
		// Not valid yet (the clock went back): decide afresh.
		s.misses.Add(1)
		return nil
	}
	s.hits.Add(1)
	return e
}

// put stores a cacheable outcome.
func (c *Cache) put(d *[32]byte, o *outcome, now int64) {
	expires := now + c.maxTTL
	if o.hasExp {
		expires = min(expires, o.expNano)
	} else {
		expires = min(expires, now+c.noExpTTL)
	}
	if expires <= now || c.perShard == 0 {
		return
	}
	size := int64(200) // entry, map slot and key, roughly
	for _, h := range o.headers {
		size += int64(32 + len(h.Name) + len(h.Value))
	}
	if size > c.bytesPerShd {
		return // larger than a shard's whole budget: not worth evicting everything for
	}
	e := &cacheEntry{o: *o, expires: expires, size: size}
	s := c.shard(d)
	s.mu.Lock()
	if old := s.m[*d]; old != nil {
		s.bytes -= old.size
		delete(s.m, *d)
	}
	for len(s.m) > 0 && (len(s.m) >= c.perShard || s.bytes+size > c.bytesPerShd) {
		s.evictOne()
	}
	s.m[*d] = e
	s.bytes += size
	s.mu.Unlock()
}

// evictOne drops one of two sampled entries, the one that expires first
// (an expired entry always goes before a live one). Go randomises the start
// of map iteration, so the first two entries are a cheap random sample.
func (s *cacheShard) evictOne() {
	var victimKey [32]byte
	var victim *cacheEntry
	n := 0
	for k, e := range s.m {
		if victim == nil || e.expires < victim.expires {
			victimKey, victim = k, e
		}
		if n++; n == 2 {
			break
		}
	}
	if victim != nil {
		delete(s.m, victimKey)
		s.bytes -= victim.size
		s.evictions.Add(1)
	}
}

// Len returns the number of entries.
func (c *Cache) Len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	var st CacheStats
	for i := range c.shards {
		s := &c.shards[i]
		st.Hits += s.hits.Load()
		st.Misses += s.misses.Load()
		st.Evictions += s.evictions.Load()
		st.Collapsed += s.collapsed.Load()
		s.mu.RLock()
		st.Size += len(s.m)
		st.Bytes += s.bytes
		s.mu.RUnlock()
	}
	return st
}

// decideCached decides a token through the cache. The hit path allocates
// nothing: the digest is computed with a pooled hasher into a stack array,
// and the entry holds the finished headers.
func (p *Policy) decideCached(tok string) Decision {
	d := p.cache.digest(p.cachePrefix, tok)
	if e := p.cache.get(&d, p.clock().UnixNano()); e != nil {
		return p.finish(&e.o, nil)
	}
	return p.decideMiss(tok, d)
}

// decideMiss verifies a token once for all concurrent requests carrying it.
// It is a separate function so that the closure's capture of d does not move
// d to the heap on the hit path.
func (p *Policy) decideMiss(tok string, d [32]byte) Decision {
	leader := false
	v, _, _ := p.cache.group.Do(string(d[:]), func() (any, error) {
		leader = true
		if testHookVerify != nil {
			testHookVerify()
		}
		o := p.verify(tok, nil)
		if o.cacheable {
			p.cache.put(&d, &o, p.clock().UnixNano())
		}
		return &o, nil
	})
	if !leader {
		p.cache.shard(&d).collapsed.Add(1)
	}
	return p.finish(v.(*outcome), nil)
}

// testHookVerify, when set by a test, runs before each collapsed verification.
var testHookVerify func()
