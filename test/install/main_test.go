package install

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/claimguard/claimguard/internal/scheme"
	"github.com/claimguard/claimguard/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under charts/claimguard/testdata")

// The package's control plane and tools, set up once in TestMain.
var (
	root       = testenv.RepoRoot()
	chartDir   = filepath.Join(root, "charts", "claimguard")
	helmBin    = filepath.Join(root, "bin", "helm")
	claimguard string
	kubeconfig string
	restConfig *rest.Config
	k8s        client.Client
	testEnv    *envtest.Environment
)

// The test's control plane starts without claimguard's CRD (helm installs it from the
// chart's crds/ and the test checks that it becomes established), but with stand-ins for
// the CRDs of cert-manager and the Prometheus Operator, whose objects the chart's and
// config/'s options create.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// make helm installs the pinned helm into bin/ (a no-op when it is there), so the
	// package also runs alone with go test.
	mk := exec.Command("make", "--no-print-directory", "helm")
	mk.Dir, mk.Stdout, mk.Stderr = root, os.Stderr, os.Stderr
	if err := mk.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "make helm:", err)
		return 1
	}
	tmp, err := os.MkdirTemp("", "claimguard-install-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// Helm keeps its caches, repositories and plugins under these; none of the user's.
	for k, dir := range map[string]string{"HELM_CACHE_HOME": "cache", "HELM_CONFIG_HOME": "config", "HELM_DATA_HOME": "data"} {
		_ = os.Setenv(k, filepath.Join(tmp, "helm", dir))
	}
	if claimguard, err = testenv.BuildClaimguard(tmp); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	assets, err := testenv.AssetsDir()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDs:                     standInCRDs(),
		ControlPlaneStartTimeout: time.Minute,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	testEnv = env
	if restConfig, err = env.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start control plane:", err)
		_ = env.Stop()
		return 1
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stop control plane:", err)
		}
	}()
	if k8s, err = client.New(restConfig, client.Options{Scheme: scheme.New()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	user, err := env.AddUser(envtest.User{Name: "install-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kc, err := user.KubeConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	kubeconfig = filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// standInCRDs are minimal CRDs for cert-manager's Issuer and Certificate and the Prometheus
// Operator's ServiceMonitor: the API server accepts their objects, without the real schemas.
func standInCRDs() []*apiextensionsv1.CustomResourceDefinition {
	crd := func(group, kind, plural string) *apiextensionsv1.CustomResourceDefinition {
		preserve := true
		version := "v1"
		return &apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: plural + "." + group},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: group,
				Names: apiextensionsv1.CustomResourceDefinitionNames{Kind: kind, ListKind: kind + "List", Plural: plural, Singular: strings.ToLower(kind)},
				Scope: apiextensionsv1.NamespaceScoped,
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
					Name: version, Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
						Type: "object", XPreserveUnknownFields: &preserve,
					}},
				}},
			},
		}
	}
	return []*apiextensionsv1.CustomResourceDefinition{
		crd("cert-manager.io", "Issuer", "issuers"),
		crd("cert-manager.io", "Certificate", "certificates"),
		crd("monitoring.coreos.com", "ServiceMonitor", "servicemonitors"),
	}
}

// runCmd runs a command from the repository root and returns its stdout and stderr.
func runCmd(t *testing.T, name string, args ...string) (string, string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// helm runs bin/helm against the test's API server.
func helm(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return runCmd(t, helmBin, append(args, "--kubeconfig", kubeconfig)...)
}

// mustHelm runs helm and fails the test when it fails.
func mustHelm(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// kubectl runs kubectl against the test's API server.
func kubectl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	return runCmd(t, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
}

// decodeObjects splits a multi-document YAML stream into objects, skipping empty documents.
func decodeObjects(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifests)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := utilyaml.Unmarshal(doc, &obj.Object); err != nil {
			t.Fatalf("decode %q: %v", doc, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		objs = append(objs, obj)
	}
}

// find returns the one object of kind (and name, unless empty); it fails the test when there
// is not exactly one.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s %q, found %d", kind, name, len(found))
	}
	return found[0]
}

// convert turns an unstructured object into a typed one.
func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtimeConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("convert %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

// createNamespace creates a namespace that enforces the restricted Pod Security Standard, so
// that the API server warns about any pod template that would not run there.
func createNamespace(t *testing.T, name string) {
	t.Helper()
	ns := &unstructured.Unstructured{}
	ns.SetAPIVersion("v1")
	ns.SetKind("Namespace")
	ns.SetName(name)
	ns.SetLabels(map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	if err := k8s.Create(context.Background(), ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// runs numbers the namespaces of the tests, which stay behind (the test's API server has
// no namespace controller to delete them), so that -count=N runs each test in a new one.
var runs atomic.Int32

// newNamespace creates a new namespace whose name starts with base.
func newNamespace(t *testing.T, base string) string {
	t.Helper()
	name := fmt.Sprintf("%s-%d", base, runs.Add(1))
	createNamespace(t, name)
	return name
}
