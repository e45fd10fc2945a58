package cli

import (
	"context"
	"crypto/tls"
	"errors"
	goflag "flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/leaderelection"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/recorder"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/claimguard/claimguard/controllers"
	"github.com/claimguard/claimguard/internal/certs"
	"github.com/claimguard/claimguard/internal/keys"
	"github.com/claimguard/claimguard/internal/policy"
	"github.com/claimguard/claimguard/internal/scheme"
	"github.com/claimguard/claimguard/internal/store"
	"github.com/claimguard/claimguard/webhook/admission"
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

	// Webhook configures the admission webhooks and their certificate.
	Webhook WebhookOptions

	zap zap.Options
}

// Certificate modes of the admission webhook server.
const (
	// CertModeSelfManaged: claimguard keeps its own CA and serving certificate in a Secret and
	// injects the CA bundle into its webhook configurations.
	CertModeSelfManaged = "self-managed"
	// CertModeExternal: another tool (cert-manager) provides tls.crt and tls.key in
	// --webhook-cert-dir and injects the CA bundle.
	CertModeExternal = "external"
)

// WebhookOptions configure the admission webhook server.
type WebhookOptions struct {
	// Addr is the listener of the webhook server ("0": no webhook server).
	Addr string
	// CertMode is CertModeSelfManaged or CertModeExternal.
	CertMode string
	// CertDir holds tls.crt and tls.key in external mode.
	CertDir string
	// Secret is the Secret of the self-managed CA and certificate, in Namespace.
	Secret string
	// ServiceName and Namespace name the webhook Service: the certificate is for
	// <ServiceName>.<Namespace>.svc, and the Secret lives in Namespace.
	ServiceName, Namespace string
	// ExtraSANs are further DNS names or IP addresses of the certificate.
	ExtraSANs []string
	// ValidatingConfiguration and MutatingConfiguration are the webhook configurations whose
	// caBundle claimguard keeps ("" for none).
	ValidatingConfiguration, MutatingConfiguration string
	// CALifetime, CertLifetime and PropagationDelay tune the rotation.
	CALifetime, CertLifetime, PropagationDelay time.Duration
	// ServiceAccountName and ServiceAccountNamespace are claimguard's own service account, whose
	// Ingress writes the guard trusts.
	ServiceAccountName, ServiceAccountNamespace string
}

func (w WebhookOptions) enabled() bool { return w.Addr != "0" }

// NewManagerOptions returns the defaults.
func NewManagerOptions() *ManagerOptions {
	return &ManagerOptions{
		MetricsAddr:      ":8080",
		ProbeAddr:        ":8081",
		LeaderElect:      true,
		LeaderElectionID: "claimguard-manager.claimguard.dev",
		// A candidate takes over a lease it has seen unrenewed for LeaseDuration,
		// checking every RetryPeriod plus up to 120% jitter: after a leader dies,
		// status writes resume within LeaseDuration + 2 x 4.4s at worst (18.8s with
		// these values, about 14s typically; controller-runtime's 15s lease makes
		// it up to 24s). A shorter renew deadline costs little: a leader that loses
		// its lease keeps serving and builds a new manager (see Run).
		LeaseDuration: 10 * time.Second,
		RenewDeadline: 8 * time.Second,
		RetryPeriod:   2 * time.Second,
		AuthAddr:      ":8443",
		ShutdownDelay: 5 * time.Second,
		Wiring:        wiringDefaults(),
		MaxTokenBytes: policy.DefaultMaxTokenBytes,
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
		Webhook:                 webhookDefaults(),
		zap:                     zap.Options{Development: false},
	}
}

// webhookDefaults are the defaults of the webhook flags: the names of config/webhook, in the
// pod's namespace and with the pod's service account when the downward API provides them
// (POD_NAMESPACE, POD_SERVICE_ACCOUNT).
func webhookDefaults() WebhookOptions {
	ns := os.Getenv("POD_NAMESPACE")
	if ns == "" {
		ns = "claimguard-system"
	}
	sa := os.Getenv("POD_SERVICE_ACCOUNT")
	if sa == "" {
		sa = "claimguard"
	}
	return WebhookOptions{
		Addr:                    ":9443",
		CertMode:                CertModeSelfManaged,
		Secret:                  "claimguard-webhook-cert",
		ServiceName:             "claimguard-webhook-service",
		Namespace:               ns,
		ValidatingConfiguration: "claimguard-validating-webhook-configuration",
		MutatingConfiguration:   "claimguard-mutating-webhook-configuration",
		CALifetime:              certs.DefaultCALifetime,
		CertLifetime:            certs.DefaultCertLifetime,
		PropagationDelay:        certs.DefaultPropagationDelay,
		ServiceAccountName:      sa,
		ServiceAccountNamespace: ns,
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
	w := &o.Webhook
	fs.StringVar(&w.Addr, "webhook-bind-address", w.Addr, "Address of the admission webhook server (TLS); every replica serves. \"0\" disables the webhooks.")
	fs.StringVar(&w.CertMode, "cert-mode", w.CertMode, "Where the webhook certificate comes from: self-managed (a CA and certificate kept in --webhook-cert-secret, CA bundle injected) or external (cert-manager: tls.crt and tls.key in --webhook-cert-dir).")
	fs.StringVar(&w.CertDir, "webhook-cert-dir", w.CertDir, "Directory holding tls.crt and tls.key, reloaded when they change (--cert-mode=external).")
	fs.StringVar(&w.Secret, "webhook-cert-secret", w.Secret, "Secret holding the self-managed webhook CA and serving certificate, in --webhook-service-namespace.")
	fs.StringVar(&w.ServiceName, "webhook-service-name", w.ServiceName, "Service in front of the webhook servers; the certificate is for <name>.<namespace>.svc.")
	fs.StringVar(&w.Namespace, "webhook-service-namespace", w.Namespace, "Namespace of the webhook Service and certificate Secret; default: $POD_NAMESPACE, else claimguard-system.")
	fs.StringSliceVar(&w.ExtraSANs, "webhook-cert-extra-sans", w.ExtraSANs, "Further DNS names or IP addresses of the webhook certificate (for webhook configurations with a clientConfig.url).")
	fs.StringVar(&w.ValidatingConfiguration, "validating-webhook-configuration", w.ValidatingConfiguration, "ValidatingWebhookConfiguration whose caBundle claimguard keeps (self-managed); empty: none.")
	fs.StringVar(&w.MutatingConfiguration, "mutating-webhook-configuration", w.MutatingConfiguration, "MutatingWebhookConfiguration whose caBundle claimguard keeps (self-managed); empty: none.")
	fs.DurationVar(&w.CALifetime, "webhook-ca-lifetime", w.CALifetime, "Validity of a self-managed webhook CA; renewed after two thirds.")
	fs.DurationVar(&w.CertLifetime, "webhook-cert-lifetime", w.CertLifetime, "Validity of a self-managed webhook serving certificate; renewed after two thirds.")
	fs.DurationVar(&w.PropagationDelay, "webhook-ca-propagation-delay", w.PropagationDelay, "How long a new CA is in the injected bundle before a certificate it signed is served.")
	fs.StringVar(&w.ServiceAccountName, "service-account-name", w.ServiceAccountName, "claimguard's own service account, whose Ingress writes the guard trusts; default: $POD_SERVICE_ACCOUNT, else claimguard.")
	fs.StringVar(&w.ServiceAccountNamespace, "service-account-namespace", w.ServiceAccountNamespace, "Namespace of that service account; default: $POD_NAMESPACE, else claimguard-system.")
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
	// As for serve: the forward-auth listener answers a header block over its
	// limit with 431, so a larger cap could never be reached.
	if o.MaxTokenBytes < 256 || o.MaxTokenBytes > maxTokenBytesLimit {
		return usageError("--max-token-bytes %d: must be between 256 and %d", o.MaxTokenBytes, maxTokenBytesLimit)
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
	if err := o.Webhook.validate(); err != nil {
		return err
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

func (w *WebhookOptions) validate() error {
	if !w.enabled() {
		return nil
	}
	if _, _, err := net.SplitHostPort(w.Addr); err != nil {
		return usageError("--webhook-bind-address %q: %v", w.Addr, err)
	}
	if w.ServiceAccountName == "" || w.ServiceAccountNamespace == "" {
		return usageError("--service-account-name and --service-account-namespace must not be empty")
	}
	switch w.CertMode {
	case CertModeExternal:
		if w.CertDir == "" {
			return usageError("--cert-mode=external needs --webhook-cert-dir (where cert-manager mounts tls.crt and tls.key)")
		}
	case CertModeSelfManaged:
		co, err := w.certOptions()
		if err != nil {
			return err
		}
		if err := co.Validate(); err != nil {
			return usageError("%v", err)
		}
	default:
		return usageError("--cert-mode %q: must be %s or %s", w.CertMode, CertModeSelfManaged, CertModeExternal)
	}
	return nil
}

// certOptions are the rotator's options from the flags.
func (w *WebhookOptions) certOptions() (certs.Options, error) {
	o := certs.Options{
		Namespace:        w.Namespace,
		SecretName:       w.Secret,
		CALifetime:       w.CALifetime,
		CertLifetime:     w.CertLifetime,
		PropagationDelay: w.PropagationDelay,
	}
	if w.ServiceName != "" {
		o.DNSNames = append(o.DNSNames, w.ServiceName+"."+w.Namespace+".svc")
	}
	for _, san := range w.ExtraSANs {
		san = strings.TrimSpace(san)
		switch {
		case san == "":
		case net.ParseIP(san) != nil:
			o.IPAddresses = append(o.IPAddresses, net.ParseIP(san))
		case len(validation.IsDNS1123Subdomain(san)) == 0:
			o.DNSNames = append(o.DNSNames, san)
		default:
			return o, usageError("--webhook-cert-extra-sans %q: neither an IP address nor a DNS name", san)
		}
	}
	if w.ValidatingConfiguration != "" {
		o.ValidatingWebhookConfigurations = []string{w.ValidatingConfiguration}
	}
	if w.MutatingConfiguration != "" {
		o.MutatingWebhookConfigurations = []string{w.MutatingConfiguration}
	}
	return o, nil
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
// Every replica runs the informer cache, the key fetcher, the snapshot builder,
// the forward-auth server and the admission webhook server (serving the
// certificate from the Secret), so every replica answers /authz and admission
// calls from its own cache; the JWTPolicy reconciler (status, Events, Ingress
// wiring), the namespace labels and the certificate rotator run on the leader
// only.
//
// The forward-auth server, the snapshot store it answers from, the token
// cache, the key fetcher, the health probes and the leader-election identity
// live as long as the process; the controller-runtime manager (informer
// cache, snapshot builder, controllers, webhooks, metrics) is built on top of
// them. controller-runtime stops a manager for good when it loses the leader
// election, which happens to the leader whenever it cannot renew its lease for
// the renew deadline: an API server outage of 10s does it. Exiting then would
// take forward-auth away from this replica until it restarted and its cache
// synced again, which with the API server away is never, while the last
// snapshot is still good. So Run keeps answering from the last snapshot and
// builds a new manager, which waits for the API server, syncs, republishes and
// stands for election again under the same identity (so it takes its own
// unexpired lease back at once instead of waiting out a lease duration).
func (o *ManagerOptions) Run(cmd *cobra.Command) error {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap), zap.WriteTo(cmd.ErrOrStderr())))
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = o.KubeAPIQPS, o.KubeAPIBurst

	sh := &managerShared{store: store.New()}
	if o.TokenCacheEntries > 0 {
		sh.tokenCache = policy.NewCache(o.TokenCacheEntries)
	}
	metrics, err := authz.NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	// In the cluster a reload is a snapshot publish by the builder; a policy
	// that does not compile is reported on its own status, not as a failed
	// reload, so every publish counts as a successful one.
	sh.store.OnPublish(func(*store.Snapshot) { metrics.ObserveReload(nil) })
	keysObserver := metrics.KeysObserver(ctrl.Log.WithName("keys"))
	sh.fetcher = keys.NewFetcher(keys.FetcherOptions{
		AllowInsecureHTTP: o.AllowInsecureJWKSHTTP,
		Observer: keys.ObserverFunc(func(ev keys.RefreshEvent) {
			if b := sh.builder.Load(); b != nil {
				b.ObserveRefresh(ev)
			}
			keysObserver.ObserveRefresh(ev)
		}),
	})
	if o.LeaderElect {
		// A copy: NewResourceLock sets its own user agent and request timeout on the config.
		sh.lock, err = leaderelection.NewResourceLock(rest.CopyConfig(cfg), noEvents{}, leaderelection.Options{
			LeaderElection:          true,
			LeaderElectionID:        o.LeaderElectionID,
			LeaderElectionNamespace: o.LeaderElectionNamespace,
			RenewDeadline:           o.RenewDeadline,
		})
		if err != nil {
			return fmt.Errorf("leader election lock: %w", err)
		}
	}
	srv, err := authz.NewServer(authz.Options{
		Addr:          o.AuthAddr,
		TLSCertFile:   o.AuthTLSCertFile,
		TLSKeyFile:    o.AuthTLSKeyFile,
		Store:         sh.store,
		Cache:         sh.tokenCache,
		Metrics:       metrics,
		Gatherer:      ctrlmetrics.Registry,
		Logger:        ctrl.Log.WithName("authz"),
		ShutdownDelay: o.ShutdownDelay,
	})
	if err != nil {
		return fmt.Errorf("create forward-auth server: %w", err)
	}
	// runCtx ends at SIGTERM or SIGINT, or when the auth listener fails (as a
	// failing runnable used to stop the manager).
	runCtx, stopRun := context.WithCancel(ctrl.SetupSignalHandler())
	defer stopRun()
	probes, probeListener, err := o.probeServer(runCtx, sh)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	bg, stopBG := context.WithCancel(context.Background())
	wg.Add(2)
	go func() {
		defer wg.Done()
		sh.fetcher.Start(bg)
	}()
	go func() {
		defer wg.Done()
		if err := probes.Serve(probeListener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			ctrl.Log.WithName("setup").Error(err, "Serving the health probes failed")
		}
	}()
	// The auth listener opens once the first snapshot is published (until then
	// every policy would be unknown) and drains after SIGTERM.
	serveErr := make(chan error, 1)
	go func() {
		var err error
		if sh.store.WaitPublished(runCtx) == nil {
			err = srv.Start(runCtx)
		}
		if err != nil {
			stopRun()
		}
		serveErr <- err
	}()

	err = o.runManagers(runCtx, cfg, sh)
	stopRun()
	err = errors.Join(err, <-serveErr)
	_ = probes.Close()
	stopBG()
	wg.Wait()
	return err
}

// managerShared is what outlives one controller-runtime manager: the store the
// forward-auth server answers from, the token cache, the key fetcher (so that
// a rebuilt manager's compiles find the key sets loaded), the leader-election
// lock (one identity per process), and what the probes and the fetcher's
// observer need of the manager currently running.
type managerShared struct {
	store      *store.Store
	tokenCache *policy.Cache
	fetcher    *keys.Fetcher
	lock       resourcelock.Interface
	builder    atomic.Pointer[controllers.SnapshotBuilder]
	// webhookStarted is the running manager's webhook server check (nil: none
	// yet, or webhooks disabled).
	webhookStarted atomic.Pointer[healthz.Checker]
}

// probeServer builds the health-probe server of the process (/healthz and
// /readyz on --health-probe-bind-address, as controller-runtime serves them).
// It is the process's rather than a manager's, so that rebuilding a manager
// never takes the liveness probe away: while the API server is down a new
// manager cannot even be created, and a failing liveness probe would have the
// kubelet restart the container, the very outage Run avoids. Readiness fails
// once the process is shutting down.
func (o *ManagerOptions) probeServer(ctx context.Context, sh *managerShared) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", o.ProbeAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen for health probes on %s: %w", o.ProbeAddr, err)
	}
	ready := map[string]healthz.Checker{
		"snapshot": snapshotReady(sh.store, time.Now, keysGrace),
		"shutdown": func(*http.Request) error {
			if ctx.Err() != nil {
				return errors.New("shutting down")
			}
			return nil
		},
	}
	if o.Webhook.enabled() {
		ready["webhook"] = func(req *http.Request) error {
			c := sh.webhookStarted.Load()
			if c == nil {
				return errors.New("the webhook server has not started")
			}
			return (*c)(req)
		}
	}
	mux := http.NewServeMux()
	for path, h := range map[string]http.Handler{
		"/healthz": &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}},
		"/readyz":  &healthz.Handler{Checks: ready},
	} {
		mux.Handle(path, http.StripPrefix(path, h))
		mux.Handle(path+"/", http.StripPrefix(path, h)) // one check: /readyz/snapshot
	}
	return &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, ln, nil
}

// noEvents is the event recorder provider of the leader-election lock, which
// is created before any manager (and so before any event broadcaster): the
// "became leader" Events are dropped; the log says the same.
type noEvents struct{}

func (noEvents) GetEventRecorderFor(string) record.EventRecorder { return noLegacyEvents{} }
func (noEvents) GetEventRecorder(string) recorder.EventRecorder  { return noEventsRecorder{} }

type noLegacyEvents struct{}

func (noLegacyEvents) Event(k8sruntime.Object, string, string, string)          {}
func (noLegacyEvents) Eventf(k8sruntime.Object, string, string, string, ...any) {}
func (noLegacyEvents) AnnotatedEventf(k8sruntime.Object, map[string]string, string, string, string, ...any) {
}

type noEventsRecorder struct{}

func (noEventsRecorder) Eventf(k8sruntime.Object, k8sruntime.Object, string, string, string, string, ...any) {
}
func (noEventsRecorder) AnnotatedEventf(k8sruntime.Object, k8sruntime.Object, map[string]string, string, string, string, string, ...any) {
}

// leaderElectionLost reports controller-runtime's error for a lost lease (it
// exports no sentinel for it).
func leaderElectionLost(err error) bool {
	return err != nil && strings.Contains(err.Error(), "leader election lost")
}

// rebuildBackoff bounds the wait between two attempts to build and start a
// manager after a failure other than a lost election. The usual one is the API
// server being away (a manager cannot be created without its discovery), and
// an attempt costs one failed request, so the bound is short: the controllers
// should be back within seconds of the API server.
const rebuildBackoff = 5 * time.Second

// runManagers runs a manager until ctx ends, and a new one each time the
// running one loses the leader election. An error of the first manager ends
// the command as before (bad flags, no cluster); once a manager has run, later
// failures are retried with backoff, since the forward-auth server is still
// answering from a good snapshot.
func (o *ManagerOptions) runManagers(ctx context.Context, cfg *rest.Config, sh *managerShared) error {
	log := ctrl.Log.WithName("setup")
	wait := time.Second
	for term := 0; ; term++ {
		err := o.runManager(ctx, cfg, sh, term > 0)
		switch {
		case ctx.Err() != nil:
			return err
		case term == 0 && !leaderElectionLost(err):
			return err
		case leaderElectionLost(err):
			wait = 0
			log.Info("Lost the leader election; starting a new manager, forward-auth keeps answering from the last snapshot")
		default:
			wait = min(max(2*wait, time.Second), rebuildBackoff)
			log.Error(err, "Could not run a manager; trying again, forward-auth keeps answering from the last snapshot", "in", wait.String())
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// runManager builds one controller-runtime manager over the shared parts and
// runs it until ctx ends or it stops (a lost election). rebuilt is set for
// every manager after the first in this process.
func (o *ManagerOptions) runManager(ctx context.Context, cfg *rest.Config, sh *managerShared, rebuilt bool) error {
	var cacheOpts cache.Options
	controllers.ConfigureCache(&cacheOpts)
	wh, err := o.webhookServer(cfg)
	if err != nil {
		return err
	}
	mopts := ctrl.Options{
		WebhookServer: wh.server,
		Scheme:        scheme.New(),
		Cache:         cacheOpts,
		Metrics:       metricsserver.Options{BindAddress: o.MetricsAddr},
		// The probes are the process's (probeServer).
		HealthProbeBindAddress:              "0",
		LeaderElection:                      o.LeaderElect,
		LeaderElectionResourceLockInterface: sh.lock,
		LeaderElectionReleaseOnCancel:       true,
		LeaseDuration:                       &o.LeaseDuration,
		RenewDeadline:                       &o.RenewDeadline,
		RetryPeriod:                         &o.RetryPeriod,
	}
	if rebuilt {
		// The stopped manager's controllers keep their names registered in
		// this process; the new ones take the same names on purpose.
		mopts.Controller.SkipNameValidation = ptr.To(true)
	}
	mgr, err := ctrl.NewManager(cfg, mopts)
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	b, rec, err := controllers.Setup(mgr, controllers.Options{
		Store:      sh.store,
		KeyFetcher: sh.fetcher,
		Fetcher: keys.FetcherOptions{
			AllowInsecureHTTP: o.AllowInsecureJWKSHTTP,
		},
		TokenCache:              sh.tokenCache,
		MaxTokenBytes:           o.MaxTokenBytes,
		Wiring:                  o.Wiring,
		Timing:                  controllers.Timing{CRDRecheck: o.CRDRecheckInterval},
		MaxConcurrentReconciles: o.MaxConcurrentReconciles,
	})
	if err != nil {
		return fmt.Errorf("set up controllers: %w", err)
	}
	sh.builder.Store(b)
	if err := o.setupWebhooks(mgr, wh, rec.Gateway); err != nil {
		return err
	}
	if o.Webhook.enabled() {
		// Ready once the webhook server answers TLS: the gate opened (certificate loaded,
		// caches synced). The forward-auth listener of the same pod waits for this too,
		// which matters only at start: a rotation never takes a loaded certificate away.
		started := mgr.GetWebhookServer().StartedChecker()
		sh.webhookStarted.Store(&started)
	}
	ctrl.Log.WithName("setup").Info("Starting manager", "leaderElection", o.LeaderElect, "metrics", o.MetricsAddr, "probes", o.ProbeAddr,
		"auth", o.AuthAddr, "authURL", o.Wiring.AuthURL("<namespace>", "<policy>"), "webhooks", o.Webhook.Addr, "certMode", o.Webhook.CertMode, "rebuilt", rebuilt)
	if err := mgr.Start(ctx); err != nil {
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
func snapshotReady(st *store.Store, now func() time.Time, grace time.Duration) healthz.Checker {
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

// webhookSetup is the webhook server of a manager and, in self-managed mode, its certificate.
type webhookSetup struct {
	server webhook.Server
	// source and clientset serve and rotate the self-managed certificate (nil: external).
	source    *certs.Source
	clientset kubernetes.Interface
	// waitCache waits for the manager's caches; set once the manager exists.
	waitCache func(context.Context) bool
}

// webhookServer builds the admission webhook server: TLS from the self-managed Source or from
// --webhook-cert-dir, HTTP/2 off (CVE-2023-44487, rapid reset; admission calls need nothing
// HTTP/1.1 lacks), and a gate that holds back listening until the certificate is loaded and the caches
// have synced, so that no call is answered from an empty cache. With --webhook-bind-address=0
// the server is disabled.
func (o *ManagerOptions) webhookServer(cfg *rest.Config) (*webhookSetup, error) {
	w := o.Webhook
	if !w.enabled() {
		return &webhookSetup{server: webhook.NewServer(webhook.Options{Port: -1})}, nil
	}
	host, portStr, _ := net.SplitHostPort(w.Addr)
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, usageError("--webhook-bind-address %q: %v", w.Addr, err)
	}
	ws := &webhookSetup{}
	tlsOpts := []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"}; c.MinVersion = tls.VersionTLS12 }}
	wo := webhook.Options{Host: host, Port: port}
	if w.CertMode == CertModeSelfManaged {
		if ws.clientset, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, fmt.Errorf("client for the webhook certificate: %w", err)
		}
		ws.source = certs.NewSource(ws.clientset, w.Namespace, w.Secret, ctrl.Log.WithName("certs"))
		tlsOpts = append(tlsOpts, func(c *tls.Config) { c.GetCertificate = ws.source.GetCertificate })
	} else {
		wo.CertDir = w.CertDir
	}
	wo.TLSOpts = tlsOpts
	ws.server = certs.Gate(webhook.NewServer(wo), func(ctx context.Context) error {
		if ws.source != nil {
			if err := ws.source.WaitReady(ctx); err != nil {
				return err
			}
		}
		if ws.waitCache != nil && !ws.waitCache(ctx) {
			return errors.New("the caches did not sync")
		}
		return nil
	})
	return ws, nil
}

// setupWebhooks registers the webhooks and, in self-managed mode, the certificate Source
// (every replica) and Rotator (leader). gw is the controllers' Gateway API tracker, which the
// HTTPRoute webhooks share.
func (o *ManagerOptions) setupWebhooks(mgr ctrl.Manager, ws *webhookSetup, gw admission.RouteSupport) error {
	w := o.Webhook
	if !w.enabled() {
		return nil
	}
	ws.waitCache = mgr.GetCache().WaitForCacheSync
	if err := admission.Setup(mgr, admission.Options{
		Wiring:                o.Wiring,
		AllowInsecureJWKSHTTP: o.AllowInsecureJWKSHTTP,
		TrustedUsers:          []string{admission.ServiceAccountUsername(w.ServiceAccountNamespace, w.ServiceAccountName)},
		GatewayAPI:            gw,
	}); err != nil {
		return fmt.Errorf("set up admission webhooks: %w", err)
	}
	if ws.source != nil {
		co, err := w.certOptions()
		if err != nil {
			return err
		}
		co.Logger = ctrl.Log.WithName("certs")
		rot, err := certs.NewRotator(ws.clientset, co)
		if err != nil {
			return err
		}
		ws.source.OnChange(rot.Trigger)
		if err := mgr.Add(ws.source); err != nil {
			return fmt.Errorf("add webhook certificate source: %w", err)
		}
		if err := mgr.Add(rot); err != nil {
			return fmt.Errorf("add webhook certificate rotator: %w", err)
		}
	}
	return nil
}
