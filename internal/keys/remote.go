package keys

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// RefreshTrigger says why a refresh ran.
type RefreshTrigger string

// The refresh triggers reported to an Observer.
const (
	// TriggerInitial is the first fetch of a new source.
	TriggerInitial RefreshTrigger = "initial"
	// TriggerScheduled is a periodic refresh or a retry after a failure.
	TriggerScheduled RefreshTrigger = "scheduled"
	// TriggerUnknownKID is a refresh asked for by RefreshForKID.
	TriggerUnknownKID RefreshTrigger = "unknown_kid"
)

// RefreshEvent describes one refresh of a remote source.
type RefreshEvent struct {
	// Source identifies the source: its JWKS URI, or for discovery the discovery document URL.
	// Sources never carry credentials, so it is safe as a metric label or log value.
	Source string
	// Trigger says why the refresh ran.
	Trigger RefreshTrigger
	// Duration is the wall time of the refresh.
	Duration time.Duration
	// Err is nil when a JWKS document was fetched and parsed. Keys a view could not use are
	// reported in Skipped, not here.
	Err error
	// Keys is the number of usable keys (the largest over the source's views).
	Keys int
	// Skipped lists the keys skipped by at least one view.
	Skipped []Skipped
	// Stale is true when the refresh failed and a previously loaded set stays in use.
	Stale bool
}

// Observer is told about refreshes, for metrics and logs, without this package depending on a
// metrics library. ObserveRefresh is called synchronously at the end of every refresh, with no
// lock held; it must be quick.
type Observer interface {
	ObserveRefresh(RefreshEvent)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(RefreshEvent)

// ObserveRefresh calls fn(ev).
func (fn ObserverFunc) ObserveRefresh(ev RefreshEvent) { fn(ev) }

// State describes a Remote's key set.
type State struct {
	// Loaded is true once a set with at least one usable key has been loaded.
	Loaded bool
	// Stale is true when a set is loaded but the latest refresh failed (stale-while-error).
	Stale bool
	// LastRefresh is the time of the latest successful refresh (zero before one).
	LastRefresh time.Time
	// LastAttempt is the time of the latest refresh, successful or not.
	LastAttempt time.Time
	// NextRefresh is when the next scheduled refresh is due (zero while one runs).
	NextRefresh time.Time
	// LastError is why the latest refresh failed, nil when it succeeded. Before the first
	// success it is the cause to report with keys_unavailable. Its text names the URL and
	// never holds key material.
	LastError error
	// Skipped lists the keys of the latest document that this view left out.
	Skipped []Skipped
	// URI is the JWKS URI in use ("" before discovery succeeded).
	URI string
}

// ErrNotLoaded is the LastError of a Remote whose first fetch has not finished yet.
var ErrNotLoaded = errors.New("the key set is still being fetched")

// Remote is one remote key set, viewed through one ParseOptions. Reads are lock-free.
type Remote struct {
	src  *source
	opts ParseOptions
	snap atomic.Pointer[snapshot]
}

type snapshot struct {
	set   *Set
	state State
}

// Current returns the current set (never nil; empty before the first successful load) and its
// state. It does not block.
func (r *Remote) Current() (*Set, State) {
	s := r.snap.Load()
	return s.set, s.state
}

// WaitLoaded blocks until the source's first fetch finished, whether it succeeded or not, or
// ctx ends (then it returns ctx.Err()).
func (r *Remote) WaitLoaded(ctx context.Context) error {
	select {
	case <-r.src.firstDone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RefreshForKID is called when a token names a kid not in the current set. Unless the kid is
// known by now, it refreshes and waits for the result, at most FetchTimeout in all and at most
// until ctx ends:
//   - a fetch already running for the source is joined (it costs the IdP nothing); if it does
//     not bring the kid, the caller goes on as below;
//   - if a refresh for an unknown kid started less than UnknownKIDInterval ago, the caller
//     returns at once (waiting only for a fetch still running), so a flood of tokens with
//     made-up kids costs one fetch per interval and source;
//   - else it starts a fetch, which concurrent callers join.
//
// It returns the set after the attempt.
func (r *Remote) RefreshForKID(ctx context.Context, kid string) *Set {
	if set := r.snap.Load().set; set.Lookup(kid) != nil {
		return set
	}
	src := r.src
	f := src.f
	// One deadline for the whole call: joining a running fetch and then starting our own must
	// not add up to more than FetchTimeout.
	timer := time.NewTimer(f.opts.FetchTimeout)
	defer timer.Stop()
	wait := func(done <-chan struct{}) bool {
		select {
		case <-done:
			return true
		case <-ctx.Done():
		case <-timer.C:
		}
		return false
	}
	for joined := false; ; joined = true {
		src.mu.Lock()
		if running := src.running; running != nil && !joined {
			// A fetch is under way (another unknown kid's, or a scheduled one): it may bring
			// the key, and waiting for it costs the IdP nothing. If it started before the
			// rotation and does not, fall through to a fetch of our own (rate-limited).
			src.mu.Unlock()
			if !wait(running) {
				return r.snap.Load().set
			}
			if set := r.snap.Load().set; set.Lookup(kid) != nil {
				return set
			}
			continue
		}
		now := f.opts.Clock()
		since := now.Sub(src.lastKIDRefresh)
		if !src.lastKIDRefresh.IsZero() && since >= 0 && since < f.opts.UnknownKIDInterval {
			running := src.running
			src.mu.Unlock()
			if running != nil {
				wait(running)
			}
			return r.snap.Load().set
		}
		src.lastKIDRefresh = now
		running := src.beginLocked(TriggerUnknownKID)
		src.mu.Unlock()
		wait(running)
		return r.snap.Load().set
	}
}

// source is one fetched document shared by all views of the same URL.
type source struct {
	f            *Fetcher
	ref          SourceRef
	key          string
	label        string
	discoveryURL string // "" for uri sources
	firstDone    chan struct{}

	mu             sync.Mutex // guards the fields below
	views          map[string]weak.Pointer[Remote]
	jwksURI        string
	discoveredAt   time.Time
	lastDoc        []byte // the latest JWKS document that parsed as a JWKS
	lastErr        error
	lastAttempt    time.Time
	lastSuccess    time.Time
	next           time.Time
	failures       int
	firstClosed    bool
	running        chan struct{} // non-nil while a fetch runs; closed when it ends
	lastKIDRefresh time.Time
	dropped        bool
}

// initialSnapshot is the view of the current document for a new Remote. Called with s.mu held.
func (s *source) initialSnapshot(opts ParseOptions) *snapshot {
	st := State{LastAttempt: s.lastAttempt, NextRefresh: s.next, URI: s.jwksURI, LastRefresh: s.lastSuccess}
	if s.lastDoc == nil {
		st.LastError = s.lastErr
		if !s.firstClosed {
			st.LastError = ErrNotLoaded
		}
		return &snapshot{set: emptySet, state: st}
	}
	set, skipped, err := parseView(s.lastDoc, opts, s.jwksURI)
	st.Skipped = skipped
	if err != nil {
		st.LastError = err
		return &snapshot{set: emptySet, state: st}
	}
	st.Loaded = true
	st.Stale = s.lastErr != nil
	st.LastError = s.lastErr
	return &snapshot{set: set, state: st}
}

var emptySet = &Set{byKID: map[string]*Key{}}

// parseView parses a fetched document for one view. A JWKS without a single usable key is an
// error: better keep the previous keys (or report keys_unavailable with the reason) than
// silently verify against nothing.
func parseView(doc []byte, opts ParseOptions, uri string) (*Set, []Skipped, error) {
	set, skipped, err := ParseLenient(doc, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("JWKS %s: %w", uri, err)
	}
	if set.Len() == 0 {
		if len(skipped) == 0 {
			return nil, nil, fmt.Errorf("JWKS %s holds no keys", uri)
		}
		more := ""
		if len(skipped) > 1 {
			more = fmt.Sprintf(" (and %d more)", len(skipped)-1)
		}
		return nil, skipped, fmt.Errorf("JWKS %s has no usable keys: %s%s", uri, skipped[0], more)
	}
	return set, skipped, nil
}

// refresh runs one refresh, or joins the one in flight, and waits for it.
func (s *source) refresh(trigger RefreshTrigger) {
	s.mu.Lock()
	running := s.beginLocked(trigger)
	s.mu.Unlock()
	<-running
}

// beginLocked starts a fetch unless one is running, and returns the channel closed when the
// running fetch ends. Called with s.mu held. This is single-flight by hand rather than
// x/sync/singleflight because RefreshForKID must see, under the same lock as its rate limiter,
// whether a fetch is in flight: between deciding to fetch and the fetch registering itself, a
// concurrent caller would otherwise neither start a fetch (rate-limited) nor wait for one.
func (s *source) beginLocked(trigger RefreshTrigger) <-chan struct{} {
	if s.running != nil {
		return s.running
	}
	running := make(chan struct{})
	s.running = running
	go func() {
		defer func() {
			// publish normally clears running together with the new snapshots, so that anyone
			// who sees the result also sees no fetch in flight; this covers the other exits.
			s.mu.Lock()
			if s.running == running {
				s.running = nil
			}
			s.mu.Unlock()
			close(running)
		}()
		s.fetchAndPublish(trigger)
	}()
	return running
}

// fetchAndPublish fetches the document (through discovery if needed), updates every live view,
// schedules the next refresh and tells the observer. Only beginLocked calls it, so at most one
// runs per source.
func (s *source) fetchAndPublish(trigger RefreshTrigger) {
	f := s.f
	start := time.Now()
	ctx, cancel := context.WithTimeout(f.ctx, f.opts.FetchTimeout)
	defer cancel()

	s.mu.Lock()
	if s.dropped {
		s.mu.Unlock()
		s.closeFirst()
		return
	}
	jwksURI, discoveredAt, failures := s.jwksURI, s.discoveredAt, s.failures
	s.mu.Unlock()

	now := f.opts.Clock()
	var err error
	if s.discoveryURL != "" && (jwksURI == "" || failures > 0 || now.Sub(discoveredAt) >= discoveryMaxAge) {
		var uri string
		uri, err = f.discover(ctx, s.discoveryURL, s.ref.Issuer)
		switch {
		case err == nil:
			jwksURI, discoveredAt = uri, now
		case jwksURI != "":
			// Keep using the known jwks_uri; the discovery error matters only if that fails too.
			err = nil
		}
	}
	var doc []byte
	var header http.Header
	if err == nil {
		doc, header, err = f.get(ctx, jwksURI)
	}
	if err == nil {
		if _, serr := splitJWKS(doc); serr != nil {
			err = fmt.Errorf("JWKS %s: %w", jwksURI, serr)
		}
	}
	s.publish(trigger, start, now, jwksURI, discoveredAt, doc, header, err)
}

// publish records the outcome in the source and every live view.
func (s *source) publish(trigger RefreshTrigger, start, now time.Time, jwksURI string, discoveredAt time.Time, doc []byte, header http.Header, err error) {
	f := s.f
	ev := RefreshEvent{Source: s.label, Trigger: trigger, Err: err}

	s.mu.Lock()
	s.lastAttempt = now
	s.jwksURI = jwksURI
	s.discoveredAt = discoveredAt
	var interval time.Duration
	if err != nil {
		s.failures++
		s.lastErr = err
		interval = f.retryDelay(s.failures)
	} else {
		s.failures = 0
		s.lastErr = nil
		s.lastSuccess = now
		interval = f.refreshInterval(header)
	}
	if !s.dropped {
		s.next = now.Add(interval)
	}
	sameDoc := err == nil && s.lastDoc != nil && bytes.Equal(doc, s.lastDoc)
	if err == nil {
		s.lastDoc = doc
	}
	skippedByIndex := map[int]Skipped{}
	for _, wp := range s.views {
		r := wp.Value()
		if r == nil {
			continue
		}
		old := r.snap.Load()
		st := old.state
		st.LastAttempt, st.NextRefresh, st.URI = now, s.next, jwksURI
		next := &snapshot{set: old.set, state: st}
		switch {
		case err != nil:
			next.state.LastError = err
			next.state.Stale = st.Loaded
		case sameDoc && st.Loaded:
			// Unchanged document: keep the very same *Set so caches keyed on it stay warm.
			next.state.LastError, next.state.Stale, next.state.LastRefresh = nil, false, now
		default:
			set, skipped, perr := parseView(doc, r.opts, jwksURI)
			next.state.Skipped = skipped
			if perr != nil {
				next.state.LastError = perr
				next.state.Stale = st.Loaded
			} else {
				next.set = set
				next.state.Loaded, next.state.Stale, next.state.LastError, next.state.LastRefresh = true, false, nil, now
			}
		}
		r.snap.Store(next)
		if next.set.Len() > ev.Keys {
			ev.Keys = next.set.Len()
		}
		for _, sk := range next.state.Skipped {
			if _, seen := skippedByIndex[sk.Index]; !seen {
				skippedByIndex[sk.Index] = sk
				ev.Skipped = append(ev.Skipped, sk)
			}
		}
		ev.Stale = ev.Stale || next.state.Stale
	}
	s.running = nil
	s.mu.Unlock()

	f.poke()
	ev.Duration = time.Since(start)
	// The observer hears of the first fetch before WaitLoaded returns, so whoever waited sees
	// the event recorded.
	if f.opts.Observer != nil {
		f.opts.Observer.ObserveRefresh(ev)
	}
	s.closeFirst()
}

func (s *source) closeFirst() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.firstClosed {
		s.firstClosed = true
		close(s.firstDone)
	}
}

// refreshInterval honours Cache-Control max-age within [MinRefresh, MaxRefresh], else
// DefaultRefresh, and subtracts up to 10% jitter so replicas and sources spread out (never
// later than the server asked).
func (f *Fetcher) refreshInterval(h http.Header) time.Duration {
	d := f.opts.DefaultRefresh
	if maxAge, ok := cacheMaxAge(h); ok {
		d = min(max(maxAge, f.opts.MinRefresh), f.opts.MaxRefresh)
	}
	return d - jitter(d/10)
}

// retryDelay is the backoff after n consecutive failures: 1s doubling, capped at MinRefresh.
func (f *Fetcher) retryDelay(n int) time.Duration {
	limit := f.opts.MinRefresh
	d := min(time.Second, limit)
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d - jitter(d/5)
}

func jitter(upTo time.Duration) time.Duration {
	if upTo <= 0 {
		return 0
	}
	return rand.N(upTo)
}

// cacheMaxAge returns the max-age of Cache-Control (the smallest if repeated); no-store and
// no-cache count as 0. Malformed values are ignored.
func cacheMaxAge(h http.Header) (time.Duration, bool) {
	var best time.Duration
	found := false
	consider := func(d time.Duration) {
		if !found || d < best {
			best, found = d, true
		}
	}
	for _, line := range h.Values("Cache-Control") {
		for _, directive := range strings.Split(line, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(directive), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				consider(0)
			case "max-age":
				n, err := strconv.ParseUint(strings.Trim(strings.TrimSpace(value), `"`), 10, 64)
				if err != nil {
					continue
				}
				// Cap before converting: a huge max-age must not overflow time.Duration.
				consider(time.Duration(min(n, uint64(100*365*24*3600))) * time.Second)
			}
		}
	}
	return best, found
}

// get fetches a URL with the size cap. The Content-Type is not trusted either way: the body
// must parse as what the caller expects.
func (f *Fetcher) get(ctx context.Context, u string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("fetch %s: %w", redact(u), err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	req.Header.Set("User-Agent", "claimguard")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, nil, f.fetchError(u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		// Drain a little so the connection can be reused, but never a large body.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, nil, fmt.Errorf("fetch %s: HTTP %d", redact(u), resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxBodyBytes+1))
	if err != nil {
		return nil, nil, f.fetchError(u, err)
	}
	if int64(len(body)) > f.opts.MaxBodyBytes {
		return nil, nil, fmt.Errorf("fetch %s: response body exceeds %d bytes", redact(u), f.opts.MaxBodyBytes)
	}
	return body, resp.Header, nil
}

// fetchError renders transport errors as "fetch <url>: <cause>" without repeating the URL.
func (f *Fetcher) fetchError(u string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		return fmt.Errorf("fetch %s: timed out after %s", redact(u), f.opts.FetchTimeout)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("fetch %s: %w", redact(u), ErrFetcherStopped)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("fetch %s: %w", redact(u), err)
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return quote(u)
	}
	return p.Redacted()
}

// discover fetches an OpenID Provider configuration and returns its jwks_uri after checking that
// its issuer is exactly the configured one (OpenID Connect Discovery 1.0, section 4.3): a
// mismatch means the document speaks for another issuer and its keys must not be trusted.
func (f *Fetcher) discover(ctx context.Context, discoveryURL, issuer string) (string, error) {
	body, _, err := f.get(ctx, discoveryURL)
	if err != nil {
		return "", err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(body, &doc); err != nil || doc == nil {
		return "", fmt.Errorf("discovery %s: not a JSON object", redact(discoveryURL))
	}
	var gotIssuer, jwksURI string
	if err := json.Unmarshal(doc["issuer"], &gotIssuer); err != nil {
		return "", fmt.Errorf("discovery %s: no issuer string", redact(discoveryURL))
	}
	if gotIssuer != issuer {
		return "", fmt.Errorf("discovery %s: issuer %s does not match the configured issuer %s", redact(discoveryURL), quote(gotIssuer), quote(issuer))
	}
	if err := json.Unmarshal(doc["jwks_uri"], &jwksURI); err != nil || jwksURI == "" {
		return "", fmt.Errorf("discovery %s: no jwks_uri string", redact(discoveryURL))
	}
	u, err := f.checkURL("jwks_uri", jwksURI)
	if err != nil {
		return "", fmt.Errorf("discovery %s: %w", redact(discoveryURL), err)
	}
	return u.String(), nil
}
