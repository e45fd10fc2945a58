package keys

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"
)

// FetcherOptions configures a Fetcher. Zero values take the documented defaults.
type FetcherOptions struct {
	// Client fetches documents. nil: a client with FetchTimeout and bounded transport limits.
	// A given client is copied; its CheckRedirect is kept if set, else the Fetcher's policy
	// (at most 3 redirects, never from https to http) applies.
	Client *http.Client
	// AllowInsecureHTTP allows http:// URLs (loopback tests only). Default: https only.
	AllowInsecureHTTP bool
	// FetchTimeout bounds one refresh (discovery plus JWKS); no caller waits longer. Default 5s.
	FetchTimeout time.Duration
	// DefaultRefresh is the refresh interval when a response has no usable Cache-Control
	// max-age. Default 5m.
	DefaultRefresh time.Duration
	// MinRefresh is the lower bound on an honoured max-age (no-cache counts as 0). Default 1m.
	// Failed refreshes retry with exponential backoff from 1s up to MinRefresh.
	MinRefresh time.Duration
	// MaxRefresh is the upper bound on an honoured max-age. Default 24h.
	MaxRefresh time.Duration
	// UnknownKIDInterval is the least time between two refreshes caused by unknown kids, per
	// source. Default 10s.
	UnknownKIDInterval time.Duration
	// MaxBodyBytes caps a response body. Default 1 MiB.
	MaxBodyBytes int64
	// Clock returns the current time. Default time.Now.
	Clock func() time.Time
	// Observer, if set, is told about every refresh (for metrics and logs).
	Observer Observer
}

// Defaults of FetcherOptions.
const (
	DefaultFetchTimeout       = 5 * time.Second
	DefaultRefreshInterval    = 5 * time.Minute
	DefaultMinRefresh         = time.Minute
	DefaultMaxRefresh         = 24 * time.Hour
	DefaultUnknownKIDInterval = 10 * time.Second
	DefaultMaxBodyBytes       = 1 << 20
)

// maxRedirects bounds redirects of a fetch: identity providers sometimes redirect once (to a
// CDN); a chain is a misconfiguration or an attack.
const maxRedirects = 3

// discoveryMaxAge is how long a discovery document is trusted before it is fetched again. It
// rarely changes; a failed JWKS fetch also triggers a new discovery.
const discoveryMaxAge = time.Hour

func (o *FetcherOptions) setDefaults() {
	if o.FetchTimeout <= 0 {
		o.FetchTimeout = DefaultFetchTimeout
	}
	if o.DefaultRefresh <= 0 {
		o.DefaultRefresh = DefaultRefreshInterval
	}
	if o.MinRefresh <= 0 {
		o.MinRefresh = DefaultMinRefresh
	}
	if o.MaxRefresh <= 0 {
		o.MaxRefresh = DefaultMaxRefresh
	}
	if o.MaxRefresh < o.MinRefresh {
		o.MaxRefresh = o.MinRefresh
	}
	if o.UnknownKIDInterval <= 0 {
		o.UnknownKIDInterval = DefaultUnknownKIDInterval
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
}

// SourceRef names a remote key set: a JWKS URI, or OIDC discovery of an issuer.
type SourceRef struct {
	// URI is the JWKS URI (jwks.uri). Ignored when Discovery is set.
	URI string
	// Issuer is the configured issuer. With Discovery, the document at
	// <Issuer without trailing "/">/.well-known/openid-configuration must name exactly this
	// issuer, and its jwks_uri is the key set.
	Issuer string
	// Discovery selects OIDC discovery (jwks.discovery: true).
	Discovery bool
}

// ErrInsecureURL is wrapped by Source errors for an http:// URL when AllowInsecureHTTP is off.
var ErrInsecureURL = errors.New("must use https")

// ErrFetcherStopped is returned by Source after the Fetcher's Start context ended.
var ErrFetcherStopped = errors.New("key fetcher is stopped")

// Fetcher fetches and refreshes remote key sets (JWKS URIs and OIDC discovery) in the
// background. One Fetcher is shared by all compiled policies of a process.
//
// Sources are shared by URL: every Source call for the same URI (or the same discovery issuer)
// uses one fetch loop. Each distinct ParseOptions gets its own view of that document (a Remote),
// because the allow-list decides which keys are kept.
//
// Source lifetime follows the Remotes: the Fetcher holds them only weakly, so a Remote stays
// refreshed as long as something (a compiled Policy) references it, and once the last holder is
// garbage-collected its view is dropped; a source without views stops refreshing and is
// forgotten. Nobody has to call a release or a sweep, so a snapshot publisher cannot forget to,
// and a compile that runs while an old policy is being collected is safe: Source resolves,
// under the Fetcher's lock, either to a live Remote (which the new policy then keeps alive) or
// to a fresh one. Go runs a GC at least every two minutes, which bounds how long an unused
// source may go on refreshing.
type Fetcher struct {
	opts   FetcherOptions
	client *http.Client

	ctx    context.Context // parent of every fetch; cancelled when Start's context ends
	cancel context.CancelFunc

	mu      sync.Mutex
	sources map[string]*source
	stopped bool
	started atomic.Bool
	wake    chan struct{}
}

// NewFetcher returns a Fetcher. Sources start their first fetch as soon as they are created;
// periodic refreshes run once Start is called.
func NewFetcher(opts FetcherOptions) *Fetcher {
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fetcher{
		opts:    opts,
		ctx:     ctx,
		cancel:  cancel,
		sources: map[string]*source{},
		wake:    make(chan struct{}, 1),
	}
	if opts.Client != nil {
		c := *opts.Client
		if c.CheckRedirect == nil {
			c.CheckRedirect = f.checkRedirect
		}
		f.client = &c
	} else {
		f.client = &http.Client{
			Timeout:       opts.FetchTimeout,
			CheckRedirect: f.checkRedirect,
			Transport: &http.Transport{
				Proxy:                  http.ProxyFromEnvironment,
				DialContext:            (&net.Dialer{Timeout: opts.FetchTimeout, KeepAlive: 30 * time.Second}).DialContext,
				TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
				TLSHandshakeTimeout:    opts.FetchTimeout,
				ResponseHeaderTimeout:  opts.FetchTimeout,
				MaxResponseHeaderBytes: 64 << 10,
				MaxIdleConns:           32,
				MaxIdleConnsPerHost:    2,
				IdleConnTimeout:        90 * time.Second,
				ForceAttemptHTTP2:      true,
			},
		}
	}
	return f
}

func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if req.URL.Scheme != "https" && !(f.opts.AllowInsecureHTTP && req.URL.Scheme == "http") {
		return fmt.Errorf("redirect to %s refused: %w", req.URL.Redacted(), ErrInsecureURL)
	}
	return nil
}

// Start runs the background refresh loop until ctx ends, then stops every fetch; it blocks.
// Call it once (a second call returns at once). Without Start, sources still make their first
// fetch and unknown-kid refreshes, but are not refreshed periodically.
func (f *Fetcher) Start(ctx context.Context) {
	if !f.started.CompareAndSwap(false, true) {
		return
	}
	defer func() {
		f.mu.Lock()
		f.stopped = true
		f.mu.Unlock()
		f.cancel()
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.ctx.Done():
			return
		case <-timer.C:
		case <-f.wake:
		}
		wait := f.runDue(false)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// maxSchedulerSleep bounds how long the loop sleeps without looking, so an injected or stepped
// clock cannot stall it for long.
const maxSchedulerSleep = time.Minute

// runDue starts the refreshes that are due and returns how long to sleep until the next one.
// With wait, it runs them to completion before returning (for tests).
func (f *Fetcher) runDue(wait bool) time.Duration {
	now := f.opts.Clock()
	var due []*source
	sleep := maxSchedulerSleep
	f.mu.Lock()
	for _, s := range f.sources {
		s.mu.Lock()
		if !s.next.IsZero() {
			if d := s.next.Sub(now); d <= 0 {
				// Clearing next marks the source as in flight; the refresh sets it again.
				s.next = time.Time{}
				due = append(due, s)
			} else if d < sleep {
				sleep = d
			}
		}
		s.mu.Unlock()
	}
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range due {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.refresh(TriggerScheduled)
		}()
	}
	if wait {
		wg.Wait()
	}
	return sleep
}

func (f *Fetcher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// SourceCount returns how many remote sources are live (for metrics and tests).
func (f *Fetcher) SourceCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sources)
}

// Source returns the shared remote source for a JWKS URI, or for OIDC discovery of an issuer,
// viewed through opts. Creating a source starts its first fetch in the background; calling
// Source again for the same ref and options returns the same Remote while it is alive. The
// error says what is wrong with the URL (not absolute, not https, credentials in it, ...);
// fetch failures are never errors here but the Remote's State.
func (f *Fetcher) Source(ref SourceRef, opts ParseOptions) (*Remote, error) {
	if opts.AllowSymmetric {
		return nil, errors.New("symmetric (oct) keys are never accepted from a remote key set")
	}
	key, label, fetchURL, err := f.resolveRef(ref)
	if err != nil {
		return nil, err
	}
	opts, vkey := normalizeOptions(opts)

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil, ErrFetcherStopped
	}
	src := f.sources[key]
	isNew := src == nil
	if isNew {
		src = &source{
			f:         f,
			ref:       ref,
			label:     label,
			key:       key,
			jwksURI:   fetchURL,
			views:     map[string]weak.Pointer[Remote]{},
			firstDone: make(chan struct{}),
		}
		if ref.Discovery {
			src.discoveryURL, src.jwksURI = fetchURL, ""
		}
		f.sources[key] = src
	}
	src.mu.Lock()
	if wp, ok := src.views[vkey]; ok {
		if r := wp.Value(); r != nil {
			src.mu.Unlock()
			return r, nil
		}
	}
	r := &Remote{src: src, opts: opts}
	r.snap.Store(src.initialSnapshot(opts))
	wp := weak.Make(r)
	src.views[vkey] = wp
	src.mu.Unlock()
	// The cleanup's argument holds the view only weakly, so it does not keep r alive.
	runtime.AddCleanup(r, f.dropView, viewHandle{src: src, key: vkey, wp: wp})
	if isNew {
		src.mu.Lock()
		src.beginLocked(TriggerInitial)
		src.mu.Unlock()
	}
	return r, nil
}

type viewHandle struct {
	src *source
	key string
	wp  weak.Pointer[Remote]
}

// dropView forgets a collected Remote, and its source when no view is left. It checks that the
// map still holds this very view: a concurrent Source may have replaced it already.
func (f *Fetcher) dropView(v viewHandle) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v.src.mu.Lock()
	defer v.src.mu.Unlock()
	if cur, ok := v.src.views[v.key]; ok && cur == v.wp {
		delete(v.src.views, v.key)
	}
	if len(v.src.views) == 0 {
		v.src.dropped = true
		v.src.next = time.Time{}
		if f.sources[v.src.key] == v.src {
			delete(f.sources, v.src.key)
		}
	}
}

// resolveRef validates the ref and returns the source key, its label for observers, and the URL
// to fetch first (the JWKS URI, or the discovery document URL).
func (f *Fetcher) resolveRef(ref SourceRef) (key, label, fetchURL string, err error) {
	if ref.Discovery {
		u, err := f.checkURL("issuer", ref.Issuer)
		if err != nil {
			return "", "", "", err
		}
		if u.RawQuery != "" {
			return "", "", "", fmt.Errorf("issuer %s: must not have a query for discovery", quote(u.Redacted()))
		}
		d := strings.TrimSuffix(ref.Issuer, "/") + "/.well-known/openid-configuration"
		return "discovery " + ref.Issuer, d, d, nil
	}
	u, err := f.checkURL("jwks uri", ref.URI)
	if err != nil {
		return "", "", "", err
	}
	s := u.String()
	return "uri " + s, s, s, nil
}

// checkURL accepts absolute https URLs (http only when allowed) with a host, no credentials and
// no fragment. Errors quote the URL for the field error they become.
func (f *Fetcher) checkURL(what, raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s %s: not a valid URL", what, quote(raw))
	}
	switch {
	case u.Scheme == "http" && !f.opts.AllowInsecureHTTP:
		return nil, fmt.Errorf("%s %s: %w", what, quote(u.Redacted()), ErrInsecureURL)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%s %s: must be an absolute https URL", what, quote(u.Redacted()))
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("%s %s: has no host", what, quote(u.Redacted()))
	case u.User != nil:
		return nil, fmt.Errorf("%s %s: must not contain credentials", what, quote(u.Redacted()))
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return nil, fmt.Errorf("%s %s: must not have a fragment", what, quote(u.Redacted()))
	}
	return u, nil
}

// normalizeOptions sorts and de-duplicates the allow-list so equal policies share a view.
func normalizeOptions(opts ParseOptions) (ParseOptions, string) {
	algs := slices.Clone(opts.algorithms())
	slices.Sort(algs)
	algs = slices.Compact(algs)
	return ParseOptions{Algorithms: algs}, strings.Join(algs, ",")
}
