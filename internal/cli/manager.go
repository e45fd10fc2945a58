package cli

import (
	goflag "flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/claimguard/claimguard/internal/scheme"
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
		zap:              zap.Options{Development: false},
	}
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
func (o *ManagerOptions) Run(cmd *cobra.Command) error {
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&o.zap), zap.WriteTo(cmd.ErrOrStderr())))
	log := ctrl.Log.WithName("setup")
	cfg, err := o.restConfig()
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme.New(),
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
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("add health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("add readiness check: %w", err)
	}
	log.Info("Starting manager", "leaderElection", o.LeaderElect, "metrics", o.MetricsAddr, "probes", o.ProbeAddr)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		return fmt.Errorf("run manager: %w", err)
	}
	return nil
}
