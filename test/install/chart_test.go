package install

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/claimguard/claimguard/internal/cli"
)

var runtimeConverter = runtime.DefaultUnstructuredConverter

// chartCase is a set of values the chart is rendered, linted and checked with. The golden
// file of each is charts/claimguard/testdata/<name>.golden.yaml; its values are in
// charts/claimguard/testdata/<name>.values.yaml (none for the defaults).
type chartCase struct {
	name       string
	valuesFile bool
}

var chartCases = []chartCase{
	{name: "default"},
	// cert-manager certificates, a ServiceMonitor and a NetworkPolicy.
	{name: "certmanager-monitoring", valuesFile: true},
	// One replica with a custom image, resources and a TLS forward-auth listener.
	{name: "single-replica", valuesFile: true},
}

const (
	releaseName      = "claimguard"
	releaseNamespace = "claimguard-system"
	// kubeVersion is the version of the test's API server, which Chart.yaml must accept.
	kubeVersion = "1.37.2"
)

func (c chartCase) valuesArgs() []string {
	if !c.valuesFile {
		return nil
	}
	return []string{"-f", filepath.Join(chartDir, "testdata", c.name+".values.yaml")}
}

// render runs helm template for the case, as release claimguard in claimguard-system.
func (c chartCase) render(t *testing.T) string {
	t.Helper()
	args := append([]string{"template", releaseName, chartDir, "--namespace", releaseNamespace, "--kube-version", kubeVersion}, c.valuesArgs()...)
	out, errOut, err := runCmd(t, helmBin, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func TestChartLint(t *testing.T) {
	for _, c := range chartCases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}, c.valuesArgs()...)
			out, errOut, err := runCmd(t, helmBin, args...)
			if err != nil {
				t.Fatalf("helm lint: %v\n%s%s", err, out, errOut)
			}
		})
	}
}

// TestChartGolden compares helm template's output with the golden files; run with -update
// to rewrite them after a deliberate change, and review the diff.
func TestChartGolden(t *testing.T) {
	for _, c := range chartCases {
		t.Run(c.name, func(t *testing.T) {
			got := c.render(t)
			golden := filepath.Join(chartDir, "testdata", c.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./test/install -run TestChartGolden -update)", err)
			}
			if diff := cmp.Diff(strings.Split(string(want), "\n"), strings.Split(got, "\n")); diff != "" {
				t.Errorf("helm template differs from %s (-want +got); if intended, run go test ./test/install -run TestChartGolden -update:\n%s", golden, diff)
			}
		})
	}
}

// TestChartValuesSchema checks that values.schema.json refuses what it must: a misspelt key
// at any level and a value of the wrong type fail helm template (and so install and upgrade).
func TestChartValuesSchema(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  string
		want string
	}{
		{"top-level typo", "replicaCunt=3", "replicaCunt"},
		{"nested typo", "webhook.timeoutSecond=3", "timeoutSecond"},
		{"typo in an option", "certManager.enable=true", "enable"},
		{"not a duration", "shutdownDelay=soon", "shutdownDelay"},
		{"not a number", "replicaCount=two", "replicaCount"},
		{"unknown log level", "logLevel=verbose", "logLevel"},
		{"token cap below the manager's minimum", "maxTokenBytes=100", "maxTokenBytes"},
		{"token cap above the manager's maximum", "maxTokenBytes=31745", "maxTokenBytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, err := runCmd(t, helmBin, "template", releaseName, chartDir, "--set", tc.set)
			if err == nil || !strings.Contains(errOut, tc.want) {
				t.Errorf("helm template --set %s: err %v, stderr %q; want a schema error naming %s", tc.set, err, errOut, tc.want)
			}
		})
	}
	// The defaults and every case's values pass the schema (TestChartLint renders them too).
	for _, c := range chartCases {
		c.render(t)
	}
	// The schema's bounds are the manager's: the extremes it lets through, the manager takes.
	out, errOut, err := runCmd(t, helmBin, "template", releaseName, chartDir, "--namespace", releaseNamespace,
		"--set", "maxTokenBytes=31744", "--set", "tokenCacheEntries=0", "--set", "replicaCount=1")
	if err != nil {
		t.Fatalf("helm template at the schema's bounds: %v\n%s", err, errOut)
	}
	newInstallation(t, decodeObjects(t, out), releaseName).checkFlagsAccepted(t)
}

// policyRule is one (apiGroup, resource, verb) grant, the unit in which two rule lists are
// compared: controller-gen and a template may group the same grants differently.
type policyRule struct{ group, resource, name, verb string }

func flatten(rules []rbacv1.PolicyRule) []policyRule {
	var out []policyRule
	for _, r := range rules {
		names := r.ResourceNames
		if len(names) == 0 {
			names = []string{""}
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, n := range names {
					for _, v := range r.Verbs {
						out = append(out, policyRule{g, res, n, v})
					}
				}
			}
		}
		for _, u := range r.NonResourceURLs {
			for _, v := range r.Verbs {
				out = append(out, policyRule{"", u, "", v})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
	return slices.Compact(out)
}

// TestChartRBACMatchesGenerated checks that the chart grants the manager exactly what
// controller-gen generates from the code's markers (config/rbac/role.yaml): the ClusterRole
// and, for the self-managed webhook certificate, the Role in the release namespace.
func TestChartRBACMatchesGenerated(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	generated := decodeObjects(t, string(data))
	wantCluster := convert[rbacv1.ClusterRole](t, find(t, generated, "ClusterRole", ""))
	wantRole := convert[rbacv1.Role](t, find(t, generated, "Role", ""))

	objs := decodeObjects(t, chartCases[0].render(t))
	gotCluster := convert[rbacv1.ClusterRole](t, find(t, objs, "ClusterRole", releaseName+"-manager"))
	if diff := cmp.Diff(flatten(wantCluster.Rules), flatten(gotCluster.Rules), cmp.AllowUnexported(policyRule{})); diff != "" {
		t.Errorf("the chart's ClusterRole differs from config/rbac/role.yaml (-generated +chart); run make manifests (the chart renders charts/claimguard/files/role.yaml):\n%s", diff)
	}
	gotRole := convert[rbacv1.Role](t, find(t, objs, "Role", releaseName+"-manager"))
	if gotRole.Namespace != releaseNamespace {
		t.Errorf("the chart's Role is in namespace %q, want the release namespace %q", gotRole.Namespace, releaseNamespace)
	}
	if diff := cmp.Diff(flatten(wantRole.Rules), flatten(gotRole.Rules), cmp.AllowUnexported(policyRule{})); diff != "" {
		t.Errorf("the chart's Role differs from config/rbac/role.yaml (-generated +chart); run make manifests:\n%s", diff)
	}

	// With cert-manager the manager writes no Secret, and gets no Role to do so.
	for _, o := range decodeObjects(t, chartCases[1].render(t)) {
		if o.GetKind() == "Role" || o.GetKind() == "RoleBinding" {
			t.Errorf("with certManager.enabled the chart renders %s %s, which only the self-managed certificate needs", o.GetKind(), o.GetName())
		}
	}
}

// webhookShape is what must agree between config/webhook and the chart: everything but
// where the Service is (its name is the release's) and the caBundle (injected).
type webhookShape struct {
	Path                    string
	FailurePolicy           *admissionregistrationv1.FailurePolicyType
	SideEffects             *admissionregistrationv1.SideEffectClass
	TimeoutSeconds          *int32
	AdmissionReviewVersions []string
	Rules                   []admissionregistrationv1.RuleWithOperations
	NamespaceSelector       any
	ObjectSelector          any
	MatchPolicy             *admissionregistrationv1.MatchPolicyType
	ReinvocationPolicy      *admissionregistrationv1.ReinvocationPolicyType
	MatchConditions         []admissionregistrationv1.MatchCondition
}

func webhookShapes(t *testing.T, objs []*unstructured.Unstructured, validating, mutating string) map[string]webhookShape {
	t.Helper()
	shapes := map[string]webhookShape{}
	path := func(cc admissionregistrationv1.WebhookClientConfig) string {
		if cc.Service == nil || cc.Service.Path == nil {
			t.Fatalf("webhook clientConfig without a service path: %+v", cc)
		}
		return *cc.Service.Path
	}
	v := convert[admissionregistrationv1.ValidatingWebhookConfiguration](t, find(t, objs, "ValidatingWebhookConfiguration", validating))
	for _, w := range v.Webhooks {
		shapes["validating/"+w.Name] = webhookShape{
			Path: path(w.ClientConfig), FailurePolicy: w.FailurePolicy, SideEffects: w.SideEffects,
			TimeoutSeconds: w.TimeoutSeconds, AdmissionReviewVersions: w.AdmissionReviewVersions, Rules: w.Rules,
			NamespaceSelector: w.NamespaceSelector, ObjectSelector: w.ObjectSelector, MatchPolicy: w.MatchPolicy,
			MatchConditions: w.MatchConditions,
		}
	}
	m := convert[admissionregistrationv1.MutatingWebhookConfiguration](t, find(t, objs, "MutatingWebhookConfiguration", mutating))
	for _, w := range m.Webhooks {
		shapes["mutating/"+w.Name] = webhookShape{
			Path: path(w.ClientConfig), FailurePolicy: w.FailurePolicy, SideEffects: w.SideEffects,
			TimeoutSeconds: w.TimeoutSeconds, AdmissionReviewVersions: w.AdmissionReviewVersions, Rules: w.Rules,
			NamespaceSelector: w.NamespaceSelector, ObjectSelector: w.ObjectSelector, MatchPolicy: w.MatchPolicy,
			ReinvocationPolicy: w.ReinvocationPolicy, MatchConditions: w.MatchConditions,
		}
	}
	return shapes
}

// TestChartWebhooksMatchConfig checks that the chart's webhook configurations are those of
// config/webhook (controller-gen's manifests plus the kustomization's selectors and
// timeouts), webhook by webhook, for a release in claimguard-system.
func TestChartWebhooksMatchConfig(t *testing.T) {
	out, errOut, err := runCmd(t, "kubectl", "kustomize", "config/webhook")
	if err != nil {
		t.Fatalf("kubectl kustomize config/webhook: %v\n%s", err, errOut)
	}
	want := webhookShapes(t, decodeObjects(t, out), "claimguard-validating-webhook-configuration", "claimguard-mutating-webhook-configuration")
	got := webhookShapes(t, decodeObjects(t, chartCases[0].render(t)), releaseName+"-validating-webhook-configuration", releaseName+"-mutating-webhook-configuration")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the chart's webhooks differ from config/webhook (-config +chart); update charts/claimguard/templates/webhooks.yaml:\n%s", diff)
	}
}

// installation is the objects of one way to install claimguard, with the names the
// manager's flags must agree with.
type installation struct {
	objs       []*unstructured.Unstructured
	deployment *appsv1.Deployment
	// flags are the manager's --name=value flags in the Deployment.
	flags map[string]string
}

func newInstallation(t *testing.T, objs []*unstructured.Unstructured, deployment string) installation {
	t.Helper()
	in := installation{objs: objs, deployment: convert[appsv1.Deployment](t, find(t, objs, "Deployment", deployment)), flags: map[string]string{}}
	for _, a := range in.container(t).Args[1:] {
		name, value, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(name, "--") {
			t.Fatalf("manager argument %q is not --name=value", a)
		}
		in.flags[name] = value
	}
	return in
}

func (in installation) container(t *testing.T) corev1.Container {
	t.Helper()
	cs := in.deployment.Spec.Template.Spec.Containers
	if len(cs) != 1 || len(cs[0].Args) == 0 || cs[0].Args[0] != "manager" {
		t.Fatalf("want one container running claimguard manager, got %+v", cs)
	}
	return cs[0]
}

// flag returns the value of a manager flag, or def when the Deployment leaves it out.
func (in installation) flag(name, def string) string {
	if v, ok := in.flags[name]; ok {
		return v
	}
	return def
}

// selects reports whether a Service's selector selects the Deployment's pods.
func (in installation) selects(sel map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if in.deployment.Spec.Template.Labels[k] != v {
			return false
		}
	}
	return true
}

// checkConsistent checks that the objects agree with each other and with the manager's
// flags: the Services select the pods and point at their named ports, the names the
// manager is told (or defaults to) are those of the objects, and the pods would run under
// the restricted Pod Security Standard.
func (in installation) checkConsistent(t *testing.T, defaults map[string]string, webhooks bool) {
	t.Helper()
	flag := func(name string) string { return in.flag(name, defaults[name]) }
	ns := in.deployment.Namespace
	c := in.container(t)
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	service := func(name string) *corev1.Service {
		svc := convert[corev1.Service](t, find(t, in.objs, "Service", name))
		if svc.Namespace != ns || !in.selects(svc.Spec.Selector) {
			t.Errorf("Service %s/%s does not select the manager's pods in %s (selector %v, pod labels %v)", svc.Namespace, svc.Name, ns, svc.Spec.Selector, in.deployment.Spec.Template.Labels)
		}
		for _, p := range svc.Spec.Ports {
			_, named := ports[p.TargetPort.String()]
			numbered := slices.Contains(slices.Collect(maps.Values(ports)), p.TargetPort.IntVal)
			if !named && !numbered {
				t.Errorf("Service %s port %s targets %q, which is no container port (%v)", name, p.Name, p.TargetPort.String(), ports)
			}
		}
		return svc
	}
	auth := service(flag("--auth-service-name"))
	if got, want := fmt.Sprint(auth.Spec.Ports[0].Port), flag("--auth-service-port"); got != want {
		t.Errorf("auth Service port %s, manager wires %s", got, want)
	}
	if got := flag("--auth-service-namespace"); got != "" && got != ns {
		t.Errorf("--auth-service-namespace %s, Service in %s", got, ns)
	}
	if !strings.HasSuffix(flag("--auth-bind-address"), fmt.Sprintf(":%d", ports["auth"])) {
		t.Errorf("--auth-bind-address %s, container port auth %d", flag("--auth-bind-address"), ports["auth"])
	}
	if !strings.HasSuffix(flag("--health-probe-bind-address"), fmt.Sprintf(":%d", ports["probes"])) {
		t.Errorf("--health-probe-bind-address %s, container port probes %d", flag("--health-probe-bind-address"), ports["probes"])
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.String() != "probes" {
		t.Errorf("readiness probe %+v, want GET /readyz on port probes", c.ReadinessProbe)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("liveness probe %+v, want GET /healthz", c.LivenessProbe)
	}
	sa := in.deployment.Spec.Template.Spec.ServiceAccountName
	find(t, in.objs, "ServiceAccount", sa)
	if got := flag("--service-account-name"); got != "" && got != sa {
		t.Errorf("--service-account-name %s, pods run as %s", got, sa)
	}
	if webhooks {
		whSvc := service(flag("--webhook-service-name"))
		if !strings.HasSuffix(flag("--webhook-bind-address"), fmt.Sprintf(":%d", ports["webhook"])) {
			t.Errorf("--webhook-bind-address %s, container port webhook %d", flag("--webhook-bind-address"), ports["webhook"])
		}
		for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
			for _, o := range in.objs {
				if o.GetKind() != kind {
					continue
				}
				webhooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
				for _, w := range webhooks {
					name, _, _ := unstructured.NestedString(w.(map[string]any), "clientConfig", "service", "name")
					namespace, _, _ := unstructured.NestedString(w.(map[string]any), "clientConfig", "service", "namespace")
					if name != whSvc.Name || namespace != ns {
						t.Errorf("%s %s calls Service %s/%s, want %s/%s", kind, o.GetName(), namespace, name, ns, whSvc.Name)
					}
				}
			}
		}
		if flag("--cert-mode") == "self-managed" {
			find(t, in.objs, "ValidatingWebhookConfiguration", flag("--validating-webhook-configuration"))
			find(t, in.objs, "MutatingWebhookConfiguration", flag("--mutating-webhook-configuration"))
		}
	}
	// The restricted Pod Security Standard, which the install test also has the API server
	// enforce on the namespace.
	pod := in.deployment.Spec.Template.Spec
	sc := c.SecurityContext
	switch {
	case pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot:
		t.Error("pods must run as non-root")
	case pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		t.Error("pods must use the RuntimeDefault seccomp profile")
	case sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		t.Error("the container must not allow privilege escalation")
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		t.Error("the container's root filesystem must be read-only")
	case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
		t.Error("the container must drop ALL capabilities")
	case c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero():
		t.Error("the container must request CPU and memory and limit memory")
	}
}

// checkFlagsAccepted runs the real claimguard binary with the Deployment's arguments: every
// flag must be known and every value valid, so the run gets as far as loading the cluster
// configuration (which the test points at a file that does not exist).
func (in installation) checkFlagsAccepted(t *testing.T) {
	t.Helper()
	args := append(slices.Clone(in.container(t).Args), "--kubeconfig", filepath.Join(t.TempDir(), "absent"))
	_, errOut, err := runCmd(t, claimguard, args...)
	if err == nil || !strings.Contains(errOut, "load --kubeconfig") {
		t.Errorf("claimguard %s: %v; want the flags accepted and the run to stop at the kubeconfig:\n%s", strings.Join(args, " "), err, errOut)
	}
}

// chartFlagDefaults are the manager's defaults the chart relies on (it sets every name).
var chartFlagDefaults = map[string]string{"--cert-mode": "self-managed"}

// TestChartDefaultsAreTheManagers checks that the chart's default values for the manager's
// tuning flags are the manager's own defaults, so that the two never drift apart.
func TestChartDefaultsAreTheManagers(t *testing.T) {
	in := newInstallation(t, decodeObjects(t, chartCases[0].render(t)), releaseName)
	d := cli.NewManagerOptions()
	for flag, want := range map[string]string{
		"--leader-election-lease-duration": d.LeaseDuration.String(),
		"--leader-election-renew-deadline": d.RenewDeadline.String(),
		"--leader-election-retry-period":   d.RetryPeriod.String(),
		"--shutdown-delay":                 d.ShutdownDelay.String(),
		"--max-token-bytes":                strconv.Itoa(d.MaxTokenBytes),
		"--token-cache-entries":            strconv.Itoa(d.TokenCacheEntries),
		"--webhook-ca-lifetime":            d.Webhook.CALifetime.String(),
		"--webhook-cert-lifetime":          d.Webhook.CertLifetime.String(),
		"--nginx-controller-names":         strings.Join(d.Wiring.NginxControllers, ","),
		"--traefik-controller-names":       strings.Join(d.Wiring.TraefikControllers, ","),
	} {
		got, ok := in.flags[flag]
		if !ok {
			t.Errorf("the chart does not set %s", flag)
			continue
		}
		gd, errGot := time.ParseDuration(got)
		wd, errWant := time.ParseDuration(want)
		if got != want && (errGot != nil || errWant != nil || gd != wd) {
			t.Errorf("the chart sets %s=%s by default, the manager's default is %s: change values.yaml", flag, got, want)
		}
	}
}

func TestChartObjectsAgree(t *testing.T) {
	for _, c := range chartCases {
		t.Run(c.name, func(t *testing.T) {
			objs := decodeObjects(t, c.render(t))
			in := newInstallation(t, objs, releaseName)
			in.checkConsistent(t, chartFlagDefaults, true)
			in.checkFlagsAccepted(t)
			if in.flag("--leader-elect", "") != "true" {
				t.Error("the chart must run the manager with leader election")
			}
			replicas := *in.deployment.Spec.Replicas
			var pdb bool
			for _, o := range objs {
				pdb = pdb || o.GetKind() == "PodDisruptionBudget"
			}
			if pdb != (replicas > 1) {
				t.Errorf("%d replicas, PodDisruptionBudget rendered: %v; want one exactly with two or more replicas", replicas, pdb)
			}
		})
	}
}
