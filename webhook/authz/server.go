package authz

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/store"
)

// Defaults of Options.
const (
	DefaultAddr              = ":8443"
	DefaultReadHeaderTimeout = 5 * time.Second
	// DefaultReadTimeout equals the header timeout: an auth sub-request has
	// no body worth waiting for, and with equal deadlines net/http sets the
	// connection's read deadline once per request instead of twice.
	DefaultReadTimeout  = DefaultReadHeaderTimeout
	DefaultWriteTimeout = 10 * time.Second
	// DefaultIdleTimeout outlives the proxies' keep-alive pools (ingress-nginx
	// keeps auth connections 60s), so the proxy, not us, closes idle
	// connections and never sends a request on a socket we just closed.
	DefaultIdleTimeout = 90 * time.Second
	// DefaultMaxHeaderBytes fits the 8 KiB token cap, cookies and the
	// forwarded headers with room to spare; a larger header block is
	// answered 431 by net/http before any handler runs.
	DefaultMaxHeaderBytes = 32 << 10
	// DefaultShutdownTimeout bounds the wait for in-flight requests.
	DefaultShutdownTimeout = 30 * time.Second
)

// Options configure a Server.
type Options struct {
	// Addr is the listen address; default ":8443". Ignored when Listener is set.
	Addr string
	// Listener, when set, is used instead of listening on Addr (tests, socket
	// activation). The server closes it.
	Listener net.Listener
	// TLSCertFile and TLSKeyFile enable TLS. The files are watched and
	// reloaded when they change, so rotating the certificate needs no restart.
	TLSCertFile, TLSKeyFile string
	// EnableHTTP2 allows HTTP/2 over TLS. Off by default: the proxies speak
	// HTTP/1.1 to auth services, and HTTP/2 adds attack surface (rapid reset)
	// for nothing.
	EnableHTTP2 bool

	// Store is where policies come from. Required.
	Store *store.Store
	// Cache, when set, is reported in the metrics (the policies use it).
	Cache *policy.Cache

	// Metrics, when set, are used as they are (create them first with
	// NewMetrics when the key fetcher needs KeysObserver). Otherwise
	// NewServer creates them in Registry.
	Metrics *Metrics
	// Registry receives the metrics when Metrics is nil: controller-runtime's
	// metrics.Registry in the manager, nil for a fresh registry.
	Registry prometheus.Registerer
	// Gatherer serves /metrics on the auth listener. nil: Registry when it is
	// also a Gatherer (as metrics.Registry and a fresh registry are).
	Gatherer prometheus.Gatherer

	// Logger receives one line per denial (and per Audit would-be denial),
	// none per allow unless LogAllowed.
	Logger logr.Logger
	// LogAllowed logs allowed requests too, at V(1).
	LogAllowed bool

	// ShutdownDelay keeps serving after the context ends, so that endpoints
	// and proxies stop sending before the listener closes (5s suits the
	// manager in a Deployment; 0 for serve).
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the wait for in-flight requests; default 30s.
	ShutdownTimeout time.Duration

	// Timeouts and header limit; zero takes the Default* values.
	ReadHeaderTimeout, ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	MaxHeaderBytes                                            int
}

// Server is the forward-auth HTTP server: /authz/{namespace}/{policy},
// /healthz, /readyz and /metrics. It is a controller-runtime
// manager.Runnable that runs on every replica (NeedLeaderElection is false),
// and works the same on its own (claimguard serve).
type Server struct {
	opts    Options
	store   *store.Store
	metrics *Metrics
	log     logr.Logger
	promh   http.Handler
	certs   *certwatcher.CertWatcher

	// view is the routing table of the current snapshot, rebuilt when the
	// store publishes (see view.go); read without locks.
	view   atomic.Pointer[view]
	viewMu sync.Mutex

	headerMemo headerMemo

	started  atomic.Bool
	draining atomic.Bool
	addr     atomic.Pointer[net.Addr]
	listened chan struct{}
}

var (
	_ manager.Runnable               = (*Server)(nil)
	_ manager.LeaderElectionRunnable = (*Server)(nil)
	_ http.Handler                   = (*Server)(nil)
)

// NewServer checks opts and builds a Server; Start runs it. It fails when the
// metrics cannot be registered or the TLS files cannot be loaded.
func NewServer(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("authz: Options.Store is required")
	}
	if (opts.TLSCertFile == "") != (opts.TLSKeyFile == "") {
		return nil, errors.New("authz: TLS needs both a certificate file and a key file")
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	setDefault(&opts.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&opts.ReadTimeout, DefaultReadTimeout)
	setDefault(&opts.WriteTimeout, DefaultWriteTimeout)
	setDefault(&opts.IdleTimeout, DefaultIdleTimeout)
	setDefault(&opts.ShutdownTimeout, DefaultShutdownTimeout)
	if opts.MaxHeaderBytes <= 0 {
		opts.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	s := &Server{opts: opts, store: opts.Store, log: opts.Logger, listened: make(chan struct{})}

	if opts.Registry == nil && opts.Metrics == nil {
		reg := prometheus.NewRegistry()
		opts.Registry, s.opts.Registry = reg, reg
	}
	s.metrics = opts.Metrics
	if s.metrics == nil {
		m, err := NewMetrics(opts.Registry)
		if err != nil {
			return nil, fmt.Errorf("authz: register metrics: %w", err)
		}
		s.metrics = m
	}
	if opts.Cache != nil {
		s.metrics.SetCache(opts.Cache)
	}
	gatherer := opts.Gatherer
	if gatherer == nil {
		if g, ok := opts.Registry.(prometheus.Gatherer); ok {
			gatherer = g
		}
	}
	if gatherer != nil {
		s.promh = promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{ErrorLog: promLogger{s.log}})
	}
	if opts.TLSCertFile != "" {
		cw, err := certwatcher.New(opts.TLSCertFile, opts.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("authz: load TLS certificate: %w", err)
		}
		s.certs = cw
	}
	s.store.OnPublish(func(snap *store.Snapshot) { s.rebuild(snap) })
	if snap := s.store.Load(); snap != nil {
		s.rebuild(snap)
	}
	return s, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Metrics returns the server's metrics (for ObserveReload and KeysObserver).
func (s *Server) Metrics() *Metrics { return s.metrics }

// NeedLeaderElection returns false: every replica answers forward-auth
// requests from its own snapshot.
func (s *Server) NeedLeaderElection() bool { return false }

// Addr returns the address the server listens on, once it does (nil before).
func (s *Server) Addr() net.Addr {
	if a := s.addr.Load(); a != nil {
		return *a
	}
	return nil
}

// Listening is closed once the server accepts connections.
func (s *Server) Listening() <-chan struct{} { return s.listened }

// Start serves until ctx ends, then stops gracefully: /readyz turns 503 at
// once, requests are still answered for ShutdownDelay (so that the
// endpoint is removed from load balancers before the listener closes), then
// the listener closes and in-flight requests finish (ShutdownTimeout at
// most). It returns nil after a clean stop. A Server starts once.
func (s *Server) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("authz: server already started")
	}
	ln := s.opts.Listener
	if ln == nil {
		var err error
		ln, err = net.Listen("tcp", s.opts.Addr)
		if err != nil {
			return fmt.Errorf("authz: listen on %s: %w", s.opts.Addr, err)
		}
	}
	addr := ln.Addr()
	s.addr.Store(&addr)

	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    s.opts.MaxHeaderBytes,
		ErrorLog:          log.New(httpErrorWriter{s.log}, "", 0),
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	if s.opts.EnableHTTP2 && s.certs != nil {
		srv.Protocols.SetHTTP2(true)
	}
	serveCtx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	errc := make(chan error, 1)
	if s.certs != nil {
		go func() {
			if err := s.certs.Start(serveCtx); err != nil {
				s.log.Error(err, "Watching the TLS certificate files failed")
			}
		}()
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.GetCertificate}
		go func() { errc <- srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { errc <- srv.Serve(ln) }()
	}
	close(s.listened)
	s.log.Info("Serving forward-auth requests", "address", addr.String(), "tls", s.certs != nil)

	select {
	case err := <-errc:
		return fmt.Errorf("authz: serve: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	if d := s.opts.ShutdownDelay; d > 0 {
		s.log.Info("Shutting down the forward-auth server after the drain delay", "delay", d)
		time.Sleep(d)
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed
	if err != nil {
		return fmt.Errorf("authz: shutdown: %w", err)
	}
	s.log.Info("Forward-auth server stopped")
	return nil
}

// ReadyzCheck is a controller-runtime healthz.Checker for the manager's
// readiness probe: ready once a snapshot is published and every policy's
// key sets have loaded, and no longer ready while draining.
func (s *Server) ReadyzCheck(_ *http.Request) error {
	switch {
	case s.draining.Load():
		return errors.New("shutting down")
	case !s.store.Published():
		return errors.New("no policies published yet")
	}
	snap := s.store.Load()
	if !snap.KeysReady() {
		var waiting []string
		for _, p := range snap.Policies() {
			if !p.KeysReady() {
				waiting = append(waiting, p.Namespace()+"/"+p.Name())
				if len(waiting) == 5 {
					waiting = append(waiting, "...")
					break
				}
			}
		}
		return fmt.Errorf("key sets not loaded yet for %s", strings.Join(waiting, ", "))
	}
	return nil
}

// httpErrorWriter sends net/http's own error log (TLS handshake failures,
// panics in handlers) to the structured logger.
type httpErrorWriter struct{ log logr.Logger }

func (w httpErrorWriter) Write(p []byte) (int, error) {
	w.log.V(1).Info("HTTP server error", "error", strings.TrimSpace(string(p)))
	return len(p), nil
}

// promLogger adapts logr to promhttp's error log.
type promLogger struct{ log logr.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Error(fmt.Errorf("%s", fmt.Sprint(v...)), "Serving metrics failed")
}
