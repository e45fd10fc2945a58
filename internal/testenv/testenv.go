package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	cgscheme "github.com/claimguard/claimguard/internal/scheme"
)

// Options configure an Env.
type Options struct {
	// ExtraCRDDirs are directories of further CRDs to install beside
	// config/crd/bases (for example Traefik's Middleware), relative to the
	// repository root or absolute.
	ExtraCRDDirs []string
	// CRDs are further CRD objects to install.
	CRDs []*apiextensionsv1.CustomResourceDefinition
	// WebhookDirs are directories of webhook configurations to install,
	// relative to the repository root or absolute.
	WebhookDirs []string
	// APIServerFlags are extra kube-apiserver flags.
	APIServerFlags map[string]string
}

// Env is a running control plane with claimguard's CRDs installed.
type Env struct {
	*envtest.Environment
	// Config reaches the API server as a cluster administrator.
	Config *rest.Config
	// Client is a controller-runtime client that knows claimguard's types.
	Client client.Client
	// Scheme holds the built-in types and claimguard's.
	Scheme *k8sruntime.Scheme
	// Kubeconfig is the path of a kubeconfig file for the API server, for
	// real kubectl, helm and claimguard processes.
	Kubeconfig string

	dir string
}

// RepoRoot returns the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// AssetsDir returns the directory holding kube-apiserver and etcd:
// $KUBEBUILDER_ASSETS, else bin/k8s in the repository, where
// hack/build-controlplane.sh (run by `make test`) puts them.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		dir = filepath.Join(RepoRoot(), "bin", "k8s")
	}
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			return "", fmt.Errorf("control plane binary %s not found in %s: run 'make controlplane' (or hack/build-controlplane.sh) first", name, dir)
		}
	}
	return dir, nil
}

func abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(RepoRoot(), p)
}

// Start starts etcd and kube-apiserver, installs the CRDs and waits for them
// to be established. Call Stop when done, also on failure paths.
func Start(opts Options) (*Env, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	crdDirs := []string{abs("config/crd/bases")}
	for _, d := range opts.ExtraCRDDirs {
		crdDirs = append(crdDirs, abs(d))
	}
	var webhookDirs []string
	for _, d := range opts.WebhookDirs {
		webhookDirs = append(webhookDirs, abs(d))
	}
	scheme := cgscheme.New()
	te := &envtest.Environment{
		Scheme:                   scheme,
		BinaryAssetsDirectory:    assets,
		CRDDirectoryPaths:        crdDirs,
		CRDs:                     opts.CRDs,
		ErrorIfCRDPathMissing:    true,
		WebhookInstallOptions:    envtest.WebhookInstallOptions{Paths: webhookDirs},
		ControlPlaneStartTimeout: 60 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// Real kubectl, not whatever sits in the assets directory.
	if p, err := exec.LookPath("kubectl"); err == nil {
		te.ControlPlane.KubectlPath = p
	}
	api := te.ControlPlane.GetAPIServer()
	for k, v := range opts.APIServerFlags {
		api.Configure().Set(k, v)
	}
	cfg, err := te.Start()
	if err != nil {
		_ = te.Stop()
		return nil, fmt.Errorf("start envtest control plane: %w", err)
	}
	env := &Env{Environment: te, Config: cfg, Scheme: scheme}
	if err := env.finish(); err != nil {
		_ = env.Stop()
		return nil, err
	}
	return env, nil
}

func (e *Env) finish() error {
	c, err := client.New(e.Config, client.Options{Scheme: e.Scheme})
	if err != nil {
		return fmt.Errorf("build client: %w", err)
	}
	e.Client = c
	e.dir, err = os.MkdirTemp("", "claimguard-envtest-")
	if err != nil {
		return err
	}
	user, err := e.AddUser(envtest.User{Name: "claimguard-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return fmt.Errorf("render kubeconfig: %w", err)
	}
	e.Kubeconfig = filepath.Join(e.dir, "kubeconfig")
	return os.WriteFile(e.Kubeconfig, kc, 0o600)
}

// Stop stops the control plane and removes temporary files.
func (e *Env) Stop() error {
	var errs []error
	if e.Environment != nil {
		errs = append(errs, e.Environment.Stop())
	}
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}

// Main is the body of a package's TestMain: it starts one Env for the
// package, hands it to setup (which stores it in a package variable), runs
// the tests and always stops the control plane, so no etcd or API server
// outlives the test binary.
func Main(m *testing.M, opts Options, setup func(*Env)) int {
	env, err := Start(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop:", err)
		}
	}()
	setup(env)
	return m.Run()
}
