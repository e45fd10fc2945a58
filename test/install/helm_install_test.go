package install

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/claimguard/claimguard/internal/cli"
	"github.com/claimguard/claimguard/internal/testenv"
)

// The CRD claimguard's chart installs from crds/.
const crdName = "jwtpolicies.auth.claimguard.dev"

// checkExist fails the test for each object that the API server does not hold.
func checkExist(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(o), got); err != nil {
			t.Errorf("%s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// checkGone fails the test for each object that the API server still holds.
func checkGone(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(o.GroupVersionKind())
		err := k8s.Get(context.Background(), client.ObjectKeyFromObject(o), got)
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s %s/%s is still there after helm uninstall (err %v)", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// checkCRDEstablished waits for claimguard's CRD to be established.
func checkCRDEstablished(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		err := k8s.Get(context.Background(), client.ObjectKey{Name: crdName}, crd)
		if err == nil {
			for _, c := range crd.Status.Conditions {
				if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRD %s not established: %v %+v", crdName, err, crd.Status.Conditions)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkNoPodSecurityWarnings fails the test when the API server warned that the chart's
// pods would violate the namespace's restricted Pod Security Standard.
func checkNoPodSecurityWarnings(t *testing.T, output string) {
	t.Helper()
	if strings.Contains(output, "PodSecurity") {
		t.Errorf("the API server warned about the pod template:\n%s", output)
	}
}

// namespacedLeftovers lists every object left in namespace ns, of every resource type the
// API server serves, except the ones that belong to the namespace itself.
func namespacedLeftovers(t *testing.T, ns string) []string {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	lists, err := dc.ServerPreferredNamespacedResources()
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range l.APIResources {
			if !strings.Contains(strings.Join(r.Verbs, ","), "list") || strings.Contains(r.Name, "/") {
				continue
			}
			objs := &unstructured.UnstructuredList{}
			objs.SetGroupVersionKind(gv.WithKind(r.Kind + "List"))
			if err := k8s.List(context.Background(), objs, client.InNamespace(ns)); err != nil {
				t.Fatalf("list %s: %v", r.Name, err)
			}
			for _, o := range objs.Items {
				switch {
				case r.Kind == "Event" || r.Kind == "ServiceAccount" && o.GetName() == "default" ||
					r.Kind == "ConfigMap" && o.GetName() == "kube-root-ca.crt":
					continue
				}
				left = append(left, r.Kind+" "+o.GetName())
			}
		}
	}
	return left
}

// TestHelmInstallUpgradeUninstall installs the chart with its defaults into the real API
// server, where every object must be accepted and the CRD established, upgrades it with
// changed values, and uninstalls it: nothing of the release may be left but the CRD, which
// Helm keeps by design.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t, "cg-helm")

	_, errOut, err := helm(t, "install", releaseName, chartDir, "--namespace", ns)
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, errOut)
	}
	checkNoPodSecurityWarnings(t, errOut)
	checkCRDEstablished(t)
	installed := decodeObjects(t, mustHelm(t, "get", "manifest", releaseName, "--namespace", ns))
	if len(installed) < 10 {
		t.Fatalf("helm get manifest lists %d objects", len(installed))
	}
	checkExist(t, installed)

	// Run the manager as the chart runs it: with the Deployment's arguments (the listeners
	// moved to free loopback ports), as the chart's service account with only the chart's
	// RBAC. It must get ready: issue its certificate into a Secret, inject the CA bundle,
	// hold the Lease. An upgrade must then keep what it wrote (a caBundle the upgrade
	// removed would break admission until the leader put it back) and must not conflict
	// with it.
	in := newInstallation(t, installed, releaseName)
	runManager(t, in, ns)
	secret := &corev1.Secret{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: releaseName + "-webhook-cert"}, secret); err != nil {
		t.Fatal(err)
	}
	if len(secret.Data["tls.crt"]) == 0 || len(secret.Data["ca-bundle.crt"]) == 0 {
		t.Fatalf("the manager did not fill the certificate Secret: keys %v", keys(secret.Data))
	}
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: releaseName + "-validating-webhook-configuration"}, vwc); err != nil {
		t.Fatal(err)
	}
	for _, w := range vwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, secret.Data["ca-bundle.crt"]) {
			t.Errorf("webhook %s: the manager did not inject the CA bundle", w.Name)
		}
	}

	before := secret.DeepCopy()
	_, errOut, err = helm(t, "upgrade", releaseName, chartDir, "--namespace", ns,
		"--set", "replicaCount=3", "--set", "networkPolicy.enabled=true", "--set", "shutdownDelay=10s")
	if err != nil {
		t.Fatalf("helm upgrade: %v\n%s", err, errOut)
	}
	checkNoPodSecurityWarnings(t, errOut)
	upgraded := decodeObjects(t, mustHelm(t, "get", "manifest", releaseName, "--namespace", ns))
	checkExist(t, upgraded)
	dep := &appsv1.Deployment{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: releaseName}, dep); err != nil {
		t.Fatal(err)
	}
	if *dep.Spec.Replicas != 3 || !strings.Contains(strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "), "--shutdown-delay=10s") {
		t.Errorf("after the upgrade: %d replicas, args %v", *dep.Spec.Replicas, dep.Spec.Template.Spec.Containers[0].Args)
	}
	find(t, upgraded, "NetworkPolicy", releaseName)
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(secret), secret); err != nil {
		t.Fatal(err)
	}
	for k, v := range before.Data {
		if !bytes.Equal(secret.Data[k], v) {
			t.Errorf("the upgrade changed %s of the manager's certificate Secret", k)
		}
	}
	bundle := vwc.Webhooks[0].ClientConfig.CABundle
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(vwc), vwc); err != nil {
		t.Fatal(err)
	}
	for _, w := range vwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, bundle) {
			t.Errorf("the upgrade removed or changed the injected caBundle of %s", w.Name)
		}
	}

	if _, errOut, err := helm(t, "uninstall", releaseName, "--namespace", ns, "--wait"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, errOut)
	}
	checkGone(t, append(installed, upgraded...))
	// What the manager created at run time is not the release's: its certificate Secret and
	// its leader-election Lease stay until the namespace is deleted (the chart's README and
	// NOTES say so). Nothing else may be left.
	leaseID := in.flag("--leader-election-id", cli.NewManagerOptions().LeaderElectionID)
	want := []string{"Lease " + leaseID, "Secret " + releaseName + "-webhook-cert"}
	left := namespacedLeftovers(t, ns)
	slices.Sort(left)
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("left in namespace %s after helm uninstall (-want +got):\n%s", ns, diff)
	}
	checkNoClusterLeftovers(t, releaseName)
	// Helm keeps the CRDs of crds/ (and with them every JWTPolicy): documented in the chart's
	// NOTES and README.
	checkCRDEstablished(t)
}

// checkNoClusterLeftovers fails when a cluster-scoped object of the release is left.
func checkNoClusterLeftovers(t *testing.T, release string) {
	t.Helper()
	for _, gvk := range []schema.GroupVersionKind{
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleList"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBindingList"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingWebhookConfigurationList"},
		{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "MutatingWebhookConfigurationList"},
	} {
		l := &unstructured.UnstructuredList{}
		l.SetGroupVersionKind(gvk)
		if err := k8s.List(context.Background(), l, client.MatchingLabels{"app.kubernetes.io/instance": release}); err != nil {
			t.Fatal(err)
		}
		for _, o := range l.Items {
			t.Errorf("%s %s is left after helm uninstall", strings.TrimSuffix(gvk.Kind, "List"), o.GetName())
		}
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestHelmInstallOptions installs the chart with cert-manager certificates, a
// ServiceMonitor and a NetworkPolicy (the API server holds stand-in CRDs for the first two)
// next to nothing else of claimguard, and uninstalls it.
func TestHelmInstallOptions(t *testing.T) {
	ns, release := newNamespace(t, "cg-helm-options"), "options"
	values := chartCases[1].valuesArgs()
	_, errOut, err := helm(t, append([]string{"install", release, chartDir, "--namespace", ns}, values...)...)
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, errOut)
	}
	checkNoPodSecurityWarnings(t, errOut)
	checkCRDEstablished(t)
	objs := decodeObjects(t, mustHelm(t, "get", "manifest", release, "--namespace", ns))
	for _, kind := range []string{"Certificate", "Issuer", "ServiceMonitor", "NetworkPolicy"} {
		find(t, objs, kind, "")
	}
	checkExist(t, objs)
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Name: release + "-claimguard-validating-webhook-configuration"}, vwc); err != nil {
		t.Fatal(err)
	}
	if got, want := vwc.Annotations["cert-manager.io/inject-ca-from"], ns+"/"+release+"-claimguard-webhook"; got != want {
		t.Errorf("inject-ca-from %q, want %q", got, want)
	}
	if _, errOut, err := helm(t, "uninstall", release, "--namespace", ns, "--wait"); err != nil {
		t.Fatalf("helm uninstall: %v\n%s", err, errOut)
	}
	checkGone(t, objs)
	if left := namespacedLeftovers(t, ns); len(left) > 0 {
		t.Errorf("left in namespace %s after helm uninstall: %v", ns, left)
	}
	checkNoClusterLeftovers(t, release)
}

// TestHelmInstallTypoFails installs with a misspelt value: the schema refuses it before
// anything reaches the cluster.
func TestHelmInstallTypoFails(t *testing.T) {
	ns, release := newNamespace(t, "cg-helm-typo"), "typo"
	_, errOut, err := helm(t, "install", release, chartDir, "--namespace", ns, "--set", "webhook.enabeld=false")
	if err == nil || !strings.Contains(errOut, "enabeld") {
		t.Fatalf("helm install with a misspelt value: err %v, stderr %q; want a schema error naming it", err, errOut)
	}
	if out := mustHelm(t, "list", "--namespace", ns, "--failed", "--pending", "--deployed", "--short"); strings.TrimSpace(out) != "" {
		t.Errorf("helm list after the refused install: %q", out)
	}
	if left := namespacedLeftovers(t, ns); len(left) > 0 {
		t.Errorf("the refused install left %v", left)
	}
	checkNoClusterLeftovers(t, release)
}

// runManager runs claimguard manager with the Deployment's arguments as the Deployment's
// service account (a client certificate with its user name, so the chart's RBAC applies),
// waits until it is ready, and stops it. Only the listeners are moved, to free loopback
// ports, and the shutdown delay is dropped.
func runManager(t *testing.T, in installation, ns string) {
	t.Helper()
	sa := in.deployment.Spec.Template.Spec.ServiceAccountName
	user, err := testEnv.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + ns + ":" + sa,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	probes := testenv.FreeAddr(t)
	args := append(slices.Clone(in.container(t).Args),
		"--kubeconfig="+kubeconfig,
		"--metrics-bind-address="+testenv.FreeAddr(t),
		"--health-probe-bind-address="+probes,
		"--auth-bind-address="+testenv.FreeAddr(t),
		"--webhook-bind-address="+testenv.FreeAddr(t),
		"--shutdown-delay=0s")
	cmd := exec.Command(claimguard, args...)
	// What the downward API gives the pods.
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns, "POD_SERVICE_ACCOUNT="+sa)
	logs := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("the manager exited with %v:\n%s", err, logs.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("the manager did not stop:\n%s", logs.String())
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + probes + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("the manager exited (%v) before it was ready:\n%s", err, logs.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the manager was not ready within a minute:\n%s", logs.String())
		}
	}
	if strings.Contains(logs.String(), "forbidden") {
		t.Errorf("the chart's RBAC refused the manager something:\n%s", logs.String())
	}
}
