package cli

import (
	"errors"
	goflag "flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/claimguard/claimguard/controllers"
	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/scheme"
	"github.com/claimguard/claimguard/internal/store"
	"github.com/claimguard/claimguard/webhook/authz"
)

// ManagerOptions configure `claimguard manager`.
type ManagerOptions struct {
	Kubeconfig              string
	MetricsAddr             string
	ProbeAddr               string
	LeaderElect             bool
	LeaderElectionNamespace string
	LeaderElectionID        string
	LeaseDuration           time.Duration
	RenewDeadline           time.Duration
	RetryPeriod             time.Duration

	// AuthAddr is the forward-auth listener of every replica.
	AuthAddr string
	// AuthTLSCertFile and AuthTLSKeyFile make the auth listener serve TLS (for
	// --auth-service-scheme=https).
	AuthTLSCertFile, AuthTLSKeyFile string
	// ShutdownDelay keeps the auth listener serving after SIGTERM, until the
	// endpoints controller and the proxies have stopped sending.
	ShutdownDelay time.Duration
	// Wiring says which URL Ingresses are wired to and which controllers are wired.
	Wiring controllers.WiringOptions
	// MaxTokenBytes is the token size cap.
	MaxTokenBytes int
	// TokenCacheEntries bounds the verified-token cache; 0 disables it.
	TokenCacheEntries int
	// AllowInsecureJWKSHTTP allows http:// JWKS URIs (tests only).
	AllowInsecureJWKSHTTP bool
	// KubeAPIQPS and KubeAPIBurst bound the manager's requests to the API server.
	KubeAPIQPS   float32
	KubeAPIBurst int
	// MaxConcurrentReconciles is the number of policies reconciled at once.
	MaxConcurrentReconciles int
	// CRDRecheckInterval is how often the presence of Traefik's Middleware CRD is checked.
	CRDRecheckInterval time.Duration

	zap zap.Options
}

// NewManagerOptions returns the defaults.
func NewManagerOptions() *ManagerOptions {
	return &ManagerOptions{
		MetricsAddr:      ":8080",
		ProbeAddr:        ":8081",
		LeaderElect:      true,
		LeaderElectionID: "claimguard-manager.claimguard.dev",
		LeaseDuration:    15 * time.Second,
		RenewDeadline:    10 * time.Second,
		RetryPeriod:      2 * time.Second,
		AuthAddr:         ":8443",
		ShutdownDelay:    5 * time.Second,
		Wiring:           wiringDefaults(),
		MaxTokenBytes:    policy.DefaultMaxTokenBytes,
		// 10k verified tokens at about 2 KiB each: 20 MiB at most.
		TokenCacheEntries: 10000,
		// A policy costs about eight writes (finalizer, one apply per Ingress,
		// status, an Event); client-go's 5/10 or controller-runtime's 20/30
		// would cap a rollout at a few policies per second (see the Controller
		// section of docs/benchmarks.md). The manager writes only when policies
		// or Ingresses change, and the API server's priority and fairness is
		// the real guard of its capacity.
		KubeAPIQPS:              500,
		KubeAPIBurst:            1000,
		MaxConcurrentReconciles: 16,
		CRDRecheckInterval:      30 * time.Second,
		zap:                     zap.Options{Development: false},
	}
}

// wiringDefaults are the controllers' defaults, with the auth Service in the
// manager's own namespace when it runs in a pod (POD_NAMESPACE, from the
// downward API).
func wiringDefaults() controllers.WiringOptions {
	w := controllers.DefaultWiringOptions()
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		w.AuthServiceNamespace = ns
	}
	return w
}

// AddFlags registers the options on fs.
func (o *ManagerOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig; default: $KUBECONFIG, then in-cluster config, then ~/.kube/config.")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, "Address of the Prometheus /metrics endpoint; \"0\" disables it.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", o.ProbeAddr, "Address of the /healthz and /readyz probes.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", o.LeaderElect, "Elect a leader among replicas; only the leader writes status and wiring, every replica serves.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace, "Namespace of the leader-election Lease; default: the pod's namespace.")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", o.LeaderElectionID, "Name of the leader-election Lease.")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", o.LeaseDuration, "How long a non-leader waits before taking over an unrenewed lease.")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", o.RenewDeadline, "How long the leader retries renewing before giving up leadership.")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", o.RetryPeriod, "How often leader-election clients retry.")
	fs.StringVar(&o.AuthAddr, "auth-bind-address", o.AuthAddr, "Address of the forward-auth listener (/authz/{namespace}/{policy}); every replica serves.")
	fs.StringVar(&o.AuthTLSCertFile, "auth-tls-cert-file", o.AuthTLSCertFile, "Certificate of the forward-auth listener (with --auth-tls-key-file); reloaded when it changes. Empty: plain HTTP.")
	fs.StringVar(&o.AuthTLSKeyFile, "auth-tls-key-file", o.AuthTLSKeyFile, "Private key of the forward-auth listener.")
	fs.DurationVar(&o.ShutdownDelay, "shutdown-delay", o.ShutdownDelay, "How long the forward-auth listener keeps serving after SIGTERM, so proxies stop sending first.")
	fs.StringVar(&o.Wiring.AuthServiceName, "auth-service-name", o.Wiring.AuthServiceName, "Service in front of the forward-auth listeners; Ingresses are wired to <name>.<namespace>.svc.")
	fs.StringVar(&o.Wiring.AuthServiceNamespace, "auth-service-namespace", o.Wiring.AuthServiceNamespace, "Namespace of the forward-auth Service; default: $POD_NAMESPACE, else claimguard-system.")
	fs.Int32Var(&o.Wiring.AuthServicePort, "auth-service-port", o.Wiring.AuthServicePort, "Port of the forward-auth Service.")
	fs.StringVar(&o.Wiring.AuthServiceScheme, "auth-service-scheme", o.Wiring.AuthServiceScheme, "Scheme of the wired auth URL: http or https.")
	fs.StringSliceVar(&o.Wiring.NginxControllers, "nginx-controller-names", o.Wiring.NginxControllers, "IngressClass spec.controller values wired with ingress-nginx auth-url annotations.")
	fs.StringSliceVar(&o.Wiring.TraefikControllers, "traefik-controller-names", o.Wiring.TraefikControllers, "IngressClass spec.controller values wired with a Traefik Middleware.")
	fs.IntVar(&o.MaxTokenBytes, "max-token-bytes", o.MaxTokenBytes, "Largest token accepted; a larger one is denied with token_too_large.")
	fs.IntVar(&o.TokenCacheEntries, "token-cache-entries", o.TokenCacheEntries, "Verified tokens kept in memory (never past exp); 0 disables the cache.")
	fs.BoolVar(&o.AllowInsecureJWKSHTTP, "allow-insecure-jwks-http", o.AllowInsecureJWKSHTTP, "Allow http:// JWKS URIs and issuers. For tests only: keys fetched over plain HTTP can be forged in transit.")
	fs.Float32Var(&o.KubeAPIQPS, "kube-api-qps", o.KubeAPIQPS, "Sustained requests per second to the API server.")
	fs.IntVar(&o.KubeAPIBurst, "kube-api-burst", o.KubeAPIBurst, "Burst of requests to the API server.")
	fs.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", o.MaxConcurrentReconciles, "JWTPolicies reconciled at the same time.")
	fs.DurationVar(&o.CRDRecheckInterval, "traefik-crd-recheck-interval", o.CRDRecheckInterval, "How often to check whether Traefik's Middleware CRD is installed.")
	gfs := goflag.NewFlagSet("zap", goflag.ContinueOnError)
	o.zap.BindFlags(gfs)
	fs.AddGoFlagSet(gfs)
}

// Validate checks the options; every error is one line naming the flag.
func (o *ManagerOptions) Validate() error {
	for flag, addr := range map[string]string{"--metrics-bind-address": o.MetricsAddr, "--health-probe-bind-address": o.ProbeAddr} {
		if addr == "0" && flag == "--metrics-bind-address" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return usageError("%s %q: %v", flag, addr, err)
		}
	}
	if _, _, err := net.SplitHostPort(o.AuthAddr); err != nil {
		return usageError("--auth-bind-address %q: %v", o.AuthAddr, err)
	}
	if (o.AuthTLSCertFile == "") != (o.AuthTLSKeyFile == "") {
		return usageError("--auth-tls-cert-file and --auth-tls-key-file go together")
	}
	if err := o.Wiring.Validate(); err != nil {
		return usageError("%v", err)
	}
	if o.MaxTokenBytes < 256 || o.MaxTokenBytes > 1<<20 {
		return usageError("--max-token-bytes %d: must be between 256 and 1048576", o.MaxTokenBytes)
	}
	if o.TokenCacheEntries < 0 {
		return usageError("--token-cache-entries %d: must not be negative", o.TokenCacheEntries)
	}
	if o.KubeAPIQPS <= 0 || o.KubeAPIBurst <= 0 {
		return usageError("--kube-api-qps and --kube-api-burst must be positive")
	}
	if o.MaxConcurrentReconciles < 1 {
		return usageError("--max-concurrent-reconciles %d: must be at least 1", o.MaxConcurrentReconciles)
	}
	if o.CRDRecheckInterval < time.Second {
		return usageError("--traefik-crd-recheck-interval %s: must be at least 1s", o.CRDRecheckInterval)
	}
	if o.ShutdownDelay < 0 {
		return usageError("--shutdown-delay %s: must not be negative", o.ShutdownDelay)
	}
	if o.LeaderElect {
		if o.LeaderElectionID == "" {
			return usageError("--leader-election-id must not be empty")
		}
		if !(o.LeaseDuration > o.RenewDeadline && o.RenewDeadline > o.RetryPeriod && o.RetryPeriod > 0) {
			return usageError("leader election needs lease-duration > renew-deadline > retry-period > 0, got %s, %s, %s", o.LeaseDuration, o.RenewDeadline, o.RetryPeriod)
		}
	}
	return nil
}

func (o *ManagerOptions) restConfig() (*rest.Config, error) {
	if o.Kubeconfig != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load --kubeconfig %s: %w", o.Kubeconfig, err)
		}
		return cfg, nil
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("find a cluster (set --kubeconfig or KUBECONFIG): %w", err)
	}
	return cfg, nil
}

func newManagerCommand(_, _ io.Writer) *cobra.Command {
	o := NewManagerOptions()
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the operator: controllers, admission webhooks and the forward-auth server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// Run starts the manager and blocks until SIGTERM or SIGINT.
//
// Every replica runs the informer cache, the key fetcher, the snapshot builder
// and the forward-auth server, so every replica answers /authz from its own
// cache; the JWTPolicy reconciler (status, Events, Ingress wiring) runs on the
// leader only.
func (o *ManagerOptions) Run(cmd *cobra.Command) error {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap), zap.WriteTo(cmd.ErrOrStderr())))
	log := ctrl.Log.WithName("setup")
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = o.KubeAPIQPS, o.KubeAPIBurst
	var cacheOpts cache.Options
	controllers.ConfigureCache(&cacheOpts)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme.New(),
		Cache:                         cacheOpts,
		Metrics:                       metricsserver.Options{BindAddress: o.MetricsAddr},
		HealthProbeBindAddress:        o.ProbeAddr,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              o.LeaderElectionID,
		LeaderElectionNamespace:       o.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.LeaseDuration,
		RenewDeadline:                 &o.RenewDeadline,
		RetryPeriod:                   &o.RetryPeriod,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}

	st := store.New()
	var tokenCache *policy.Cache
	if o.TokenCacheEntries > 0 {
		tokenCache = policy.NewCache(o.TokenCacheEntries)
	}
	metrics, err := authz.NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	// In the cluster a reload is a snapshot publish by the builder; a policy
	// that does not compile is reported on its own status, not as a failed
	// reload, so every publish counts as a successful one.
	st.OnPublish(func(*store.Snapshot) { metrics.ObserveReload(nil) })
	if _, _, err := controllers.Setup(mgr, controllers.Options{
		Store: st,
		Fetcher: keys.FetcherOptions{
			AllowInsecureHTTP: o.AllowInsecureJWKSHTTP,
			Observer:          metrics.KeysObserver(ctrl.Log.WithName("keys")),
		},
		TokenCache:              tokenCache,
		MaxTokenBytes:           o.MaxTokenBytes,
		Wiring:                  o.Wiring,
		Timing:                  controllers.Timing{CRDRecheck: o.CRDRecheckInterval},
		MaxConcurrentReconciles: o.MaxConcurrentReconciles,
	}); err != nil {
		return fmt.Errorf("set up controllers: %w", err)
	}
	srv, err := authz.NewServer(authz.Options{
		Addr:          o.AuthAddr,
		TLSCertFile:   o.AuthTLSCertFile,
		TLSKeyFile:    o.AuthTLSKeyFile,
		Store:         st,
		Cache:         tokenCache,
		Metrics:       metrics,
		Gatherer:      ctrlmetrics.Registry,
		Logger:        ctrl.Log.WithName("authz"),
		ShutdownDelay: o.ShutdownDelay,
	})
	if err != nil {
		return fmt.Errorf("create forward-auth server: %w", err)
	}
	if err := mgr.Add(srv); err != nil {
		return fmt.Errorf("add forward-auth server: %w", err)
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("snapshot", snapshotReady(st, time.Now, keysGrace)); err != nil {
		return fmt.Errorf("add readiness check: %w", err)
	}
	log.Info("Starting manager", "leaderElection", o.LeaderElect, "metrics", o.MetricsAddr, "probes", o.ProbeAddr,
		"auth", o.AuthAddr, "authURL", o.Wiring.AuthURL("<namespace>", "<policy>"))
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}

// keysGrace is how long readiness waits for the first fetch of remote key
// sets after the first snapshot: two fetch timeouts.
const keysGrace = 2 * keys.DefaultFetchTimeout

// snapshotReady is the readiness check of a replica: ready once it can answer
// from its own snapshot (before the first publish every policy would be
// unknown and denied), and once every key set has loaded or grace has passed
// since that publish. The grace bound matters: a single policy whose Secret is
// missing or whose identity provider is down must not keep every replica
// unready, which would take forward-auth away from every other policy too.
func snapshotReady(st *store.Store, now func() time.Time, grace time.Duration) func(*http.Request) error {
	var first time.Time
	var mu sync.Mutex
	return func(*http.Request) error {
		if !st.Published() {
			return errors.New("no policy snapshot published yet")
		}
		mu.Lock()
		if first.IsZero() {
			first = now()
		}
		waited := now().Sub(first)
		mu.Unlock()
		if snap := st.Load(); !snap.KeysReady() && waited < grace {
			return errors.New("waiting for the first fetch of remote key sets")
		}
		return nil
	}
}
