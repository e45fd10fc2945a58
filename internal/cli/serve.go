package cli

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/policyfile"
	"github.com/claimguard/claimguard/internal/store"
	"github.com/claimguard/claimguard/webhook/authz"
)

// ServeOptions configure `claimguard serve`; each field is the flag of the
// same name (see AddFlags for what it means).
type ServeOptions struct {
	PolicyFile            string
	Listen                string
	SecretDir             string
	MaxTokenBytes         int
	AllowInsecureJWKSHTTP bool
	TLSCertFile           string
	TLSKeyFile            string
	EnableHTTP2           bool
	ShutdownDelay         time.Duration
	CacheSize             int
	LogAllowed            bool

	zap zap.Options
}

// Defaults of serve.
const (
	DefaultServeListen = ":8443"
	DefaultCacheSize   = 100000
	// maxTokenBytesLimit keeps --max-token-bytes below the server's header
	// limit, where a larger cap could never be reached.
	maxTokenBytesLimit = authz.DefaultMaxHeaderBytes - 1024
)

// NewServeOptions returns the defaults.
func NewServeOptions() *ServeOptions {
	return &ServeOptions{
		Listen:        DefaultServeListen,
		MaxTokenBytes: policy.DefaultMaxTokenBytes,
		CacheSize:     DefaultCacheSize,
	}
}

// AddFlags registers the options on fs.
func (o *ServeOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.PolicyFile, "policy-file", o.PolicyFile, "File of JWTPolicy manifests (YAML, several documents allowed); reloaded when it changes. Required.")
	fs.StringVar(&o.Listen, "listen", o.Listen, "Address of the forward-auth listener (/authz/{namespace}/{policy}, /healthz, /readyz, /metrics).")
	fs.StringVar(&o.SecretDir, "secret-dir", o.SecretDir, "Directory of secretRef files: secretRef {name, key} of namespace NS is the file DIR/NS/name/key (a JWKS document).")
	fs.IntVar(&o.MaxTokenBytes, "max-token-bytes", o.MaxTokenBytes, "Largest token accepted, in bytes; a larger one is denied with token_too_large.")
	fs.BoolVar(&o.AllowInsecureJWKSHTTP, "allow-insecure-jwks-http", o.AllowInsecureJWKSHTTP, "Allow http:// JWKS URIs and issuers (local testing only; keys fetched over plain HTTP can be forged).")
	fs.StringVar(&o.TLSCertFile, "tls-cert-file", o.TLSCertFile, "Serve HTTPS with this certificate (PEM); reloaded when the file changes. Needs --tls-key-file.")
	fs.StringVar(&o.TLSKeyFile, "tls-key-file", o.TLSKeyFile, "Private key (PEM) of --tls-cert-file.")
	fs.BoolVar(&o.EnableHTTP2, "enable-http2", o.EnableHTTP2, "Allow HTTP/2 over TLS (off by default).")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", o.ShutdownDelay, "On SIGTERM, keep answering for this long (readiness already failing) before closing the listener.")
	fs.IntVar(&o.CacheSize, "cache-size", o.CacheSize, "Entries of the verified-token cache; 0 disables it.")
	fs.BoolVar(&o.LogAllowed, "log-allowed", o.LogAllowed, "Also log allowed requests (at verbosity 1, e.g. --zap-log-level=debug).")
	gfs := goflag.NewFlagSet("zap", goflag.ContinueOnError)
	o.zap.BindFlags(gfs)
	fs.AddGoFlagSet(gfs)
}

// Validate checks the options; every error is one line naming the flag.
func (o *ServeOptions) Validate() error {
	switch {
	case o.PolicyFile == "":
		return usageError("--policy-file is required")
	case o.MaxTokenBytes <= 0 || o.MaxTokenBytes > maxTokenBytesLimit:
		return usageError("--max-token-bytes %d: must be between 1 and %d", o.MaxTokenBytes, maxTokenBytesLimit)
	case o.CacheSize < 0:
		return usageError("--cache-size %d: must not be negative", o.CacheSize)
	case o.ShutdownDelay < 0:
		return usageError("--shutdown-delay %s: must not be negative", o.ShutdownDelay)
	case (o.TLSCertFile == "") != (o.TLSKeyFile == ""):
		return usageError("--tls-cert-file and --tls-key-file go together")
	case o.EnableHTTP2 && o.TLSCertFile == "":
		return usageError("--enable-http2 needs --tls-cert-file and --tls-key-file")
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		return usageError("--listen %q: %v", o.Listen, err)
	}
	if o.SecretDir != "" {
		if st, err := os.Stat(o.SecretDir); err != nil || !st.IsDir() {
			return usageError("--secret-dir %q is not a directory", o.SecretDir)
		}
	}
	return nil
}

func newServeCommand(_, _ io.Writer) *cobra.Command {
	o := NewServeOptions()
	cmd := &cobra.Command{
		Use:   "serve --policy-file FILE [--listen ADDR] [--secret-dir DIR]",
		Short: "Run the forward-auth server alone, from a file of JWTPolicy manifests (no cluster)",
		Long: `serve answers forward-auth requests on /authz/{namespace}/{policy} for the
JWTPolicy manifests in --policy-file, without a cluster. The file is reloaded
when it changes; an invalid edit is logged and the last good policies stay in
force. A file that is invalid at start is an error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return o.Run(ctx, cmd.ErrOrStderr())
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// Run loads the policy file, serves until ctx ends, and returns nil after a
// clean stop. A policy file that is invalid at start is printed to stderr,
// one line per problem, and ends the command with exit code 1.
func (o *ServeOptions) Run(ctx context.Context, stderr io.Writer) error {
	logger := zap.New(zap.UseFlagOptions(&o.zap), zap.WriteTo(stderr))
	ctrl.SetLogger(logger)
	log := logger.WithName("serve")

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics, err := authz.NewMetrics(reg)
	if err != nil {
		return err
	}
	fetcher := keys.NewFetcher(keys.FetcherOptions{
		AllowInsecureHTTP: o.AllowInsecureJWKSHTTP,
		Observer:          metrics.KeysObserver(logger.WithName("keys")),
	})
	var cache *policy.Cache
	if o.CacheSize > 0 {
		cache = policy.NewCache(o.CacheSize)
	}
	st := store.New()
	watcher := &policyfile.Watcher{
		File: o.PolicyFile,
		Options: policyfile.Options{
			SecretDir:         o.SecretDir,
			Fetcher:           fetcher,
			AllowInsecureHTTP: o.AllowInsecureJWKSHTTP,
			MaxTokenBytes:     o.MaxTokenBytes,
			Cache:             cache,
		},
		Publisher: st,
		Log:       logger.WithName("policyfile"),
		OnReload:  metrics.ObserveReload,
	}
	if err := watcher.Load(); err != nil {
		var fe *policyfile.Error
		if errors.As(err, &fe) {
			for _, line := range fe.Lines {
				fmt.Fprintln(stderr, "error: "+line)
			}
			return &ExitCodeError{Code: ExitError}
		}
		return err
	}
	metrics.ObserveReload(nil)
	log.Info("Loaded policy file", "file", o.PolicyFile, "policies", st.Load().Len())

	srv, err := authz.NewServer(authz.Options{
		Addr:          o.Listen,
		TLSCertFile:   o.TLSCertFile,
		TLSKeyFile:    o.TLSKeyFile,
		EnableHTTP2:   o.EnableHTTP2,
		Store:         st,
		Cache:         cache,
		Metrics:       metrics,
		Gatherer:      reg,
		Logger:        logger.WithName("authz"),
		LogAllowed:    o.LogAllowed,
		ShutdownDelay: o.ShutdownDelay,
	})
	if err != nil {
		return err
	}

	// The server decides when the process ends: it returns after its drain;
	// the fetcher and the watcher stop with it. A watcher that cannot watch
	// is logged, not fatal: the policies in force keep being served.
	bg, cancelBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); fetcher.Start(bg) }()
	go func() {
		defer wg.Done()
		if err := watcher.Run(bg); err != nil {
			log.Error(err, "Cannot watch the policy file; changes will not be loaded", "file", o.PolicyFile)
		}
	}()
	err = srv.Start(ctx)
	cancelBG()
	wg.Wait()
	return err
}
