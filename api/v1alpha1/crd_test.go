package v1alpha1_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
	"github.com/claimguard/claimguard/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.Main(m, testenv.Options{}, func(e *testenv.Env) { env = e }))
}

// newNamespace creates a namespace of its own for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "crd-"}}
	if err := env.Client.Create(context.Background(), ns); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// readObjects decodes every YAML document of a file into unstructured objects,
// exactly as written (no typed round trip that could drop or default fields).
func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 4096)
	var objs []*unstructured.Unstructured
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decode %s: %v", path, err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func sampleFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(testenv.RepoRoot(), "config", "samples", "auth_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	return files
}

func TestSamplesAccepted(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	for _, file := range sampleFiles(t) {
		for _, obj := range readObjects(t, file) {
			t.Run(filepath.Base(file)+"/"+obj.GetName(), func(t *testing.T) {
				obj.SetNamespace(ns)
				if err := env.Client.Create(ctx, obj); err != nil {
					t.Fatalf("the API server refused a sample: %v", err)
				}
			})
		}
	}
}

// invalidCase is one policy the API server must refuse, with the field the
// error must name and a part of its message.
type invalidCase struct {
	name    string
	obj     *unstructured.Unstructured
	field   string
	message string
}

// invalidFromFiles reads testdata/invalid/*.yaml; each file states the
// expected field and message in "# field:" and "# message:" comments, so the
// same files serve this test and a person trying `kubectl apply -f`.
func invalidFromFiles(t *testing.T) []invalidCase {
	t.Helper()
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil || len(files) < 20 {
		t.Fatalf("want at least 20 invalid policies in testdata/invalid, found %d (%v)", len(files), err)
	}
	var cases []invalidCase
	for _, file := range files {
		c := invalidCase{name: strings.TrimSuffix(filepath.Base(file), ".yaml")}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "# field: "); ok {
				c.field = v
			}
			if v, ok := strings.CutPrefix(line, "# message: "); ok {
				c.message = v
			}
		}
		if c.field == "" || c.message == "" {
			t.Fatalf("%s: missing '# field:' or '# message:' comment", file)
		}
		objs := readObjects(t, file)
		if len(objs) != 1 {
			t.Fatalf("%s: want one object, got %d", file, len(objs))
		}
		c.obj = objs[0]
		cases = append(cases, c)
	}
	return cases
}

// generatedInvalid covers limits that would make unreadable files.
func generatedInvalid() []invalidCase {
	base := func(name string, mutate func(spec map[string]any)) *unstructured.Unstructured {
		spec := map[string]any{
			"issuers": []any{map[string]any{
				"issuer": "https://idp.example.com",
				"jwks":   map[string]any{"uri": "https://idp.example.com/certs"},
			}},
		}
		mutate(spec)
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "auth.claimguard.dev/v1alpha1",
			"kind":       "JWTPolicy",
			"metadata":   map[string]any{"name": name},
			"spec":       spec,
		}}
	}
	manyClaims := make([]any, 65)
	for i := range manyClaims {
		manyClaims[i] = map[string]any{"claim": fmt.Sprintf("c%d", i), "operator": "Exists"}
	}
	return []invalidCase{
		{
			name: "issuer-too-long",
			obj: base("issuer-too-long", func(s map[string]any) {
				s["issuers"].([]any)[0].(map[string]any)["issuer"] = "https://" + strings.Repeat("a", 1100)
			}),
			field: "spec.issuers[0].issuer", message: "Too long",
		},
		{
			name:  "too-many-required-claims",
			obj:   base("too-many-required-claims", func(s map[string]any) { s["requiredClaims"] = manyClaims }),
			field: "spec.requiredClaims", message: "must have at most 64 items",
		},
		{
			name: "inline-jwks-too-large",
			obj: base("inline-jwks-too-large", func(s map[string]any) {
				s["issuers"].([]any)[0].(map[string]any)["jwks"] = map[string]any{"inline": strings.Repeat("x", 70000)}
			}),
			field: "spec.issuers[0].jwks.inline", message: "Too long",
		},
		{
			name: "regex-too-long",
			obj: base("regex-too-long", func(s map[string]any) {
				s["requiredClaims"] = []any{map[string]any{"claim": "email", "operator": "Matches", "values": []any{strings.Repeat("a", 2000)}}}
			}),
			field: "spec.requiredClaims[0].values[0]", message: "Too long",
		},
	}
}

func TestInvalidPoliciesRejected(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	cases := append(invalidFromFiles(t), generatedInvalid()...)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.obj.SetNamespace(ns)
			err := env.Client.Create(ctx, tc.obj)
			if err == nil {
				t.Fatalf("the API server accepted an invalid policy; want an error naming %s", tc.field)
			}
			if !apierrors.IsInvalid(err) && !apierrors.IsBadRequest(err) {
				t.Fatalf("want Invalid, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Errorf("error does not name field %s:\n%v", tc.field, err)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error does not say %q:\n%v", tc.message, err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	ns := newNamespace(t)
	p := &authv1alpha1.JWTPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: ns},
		Spec: authv1alpha1.JWTPolicySpec{Issuers: []authv1alpha1.Issuer{{
			Issuer: "https://idp.example.com",
			JWKS:   authv1alpha1.JWKSSource{Discovery: true},
		}}},
	}
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if p.Spec.Mode != authv1alpha1.ModeEnforce {
		t.Errorf("mode: got %q, want Enforce", p.Spec.Mode)
	}
	if p.Spec.ClockSkew == nil || p.Spec.ClockSkew.Duration != 30*time.Second {
		t.Errorf("clockSkew: got %v, want 30s", p.Spec.ClockSkew)
	}
	if got := p.Spec.Issuers[0].RequireExpiry; got == nil || !*got {
		t.Errorf("requireExpiry: got %v, want true", got)
	}
	if p.Spec.Issuers[0].Algorithms != nil {
		t.Errorf("algorithms: got %v, want absent (the engine applies RS256, ES256)", p.Spec.Issuers[0].Algorithms)
	}
}

func TestStatusSubresource(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	p := &authv1alpha1.JWTPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "status", Namespace: ns},
		Spec: authv1alpha1.JWTPolicySpec{Issuers: []authv1alpha1.Issuer{{
			Issuer: "https://idp.example.com",
			JWKS:   authv1alpha1.JWKSSource{URI: "https://idp.example.com/certs"},
		}}},
	}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	gen := p.Generation

	// A status write through the subresource is stored and does not bump
	// metadata.generation; a spec change smuggled into it is ignored.
	p.Status.ObservedGeneration = gen
	p.Status.BoundIngresses = 3
	p.Status.Keys = []authv1alpha1.IssuerKeys{{Issuer: "https://idp.example.com", Kids: []string{"a1"}, LastRefresh: ptr.To(metav1.Now())}}
	meta.SetStatusCondition(&p.Status.Conditions, metav1.Condition{Type: authv1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: authv1alpha1.ReasonCompiled, ObservedGeneration: gen})
	p.Spec.Mode = authv1alpha1.ModeAudit
	if err := env.Client.Status().Update(ctx, p); err != nil {
		t.Fatalf("status update: %v", err)
	}
	got := &authv1alpha1.JWTPolicy{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
		t.Fatal(err)
	}
	if got.Generation != gen {
		t.Errorf("generation changed by a status write: %d -> %d", gen, got.Generation)
	}
	if got.Spec.Mode != authv1alpha1.ModeEnforce {
		t.Errorf("a status write changed spec.mode to %q", got.Spec.Mode)
	}
	if got.Status.BoundIngresses != 3 || !meta.IsStatusConditionTrue(got.Status.Conditions, authv1alpha1.ConditionReady) {
		t.Errorf("status not stored: %+v", got.Status)
	}

	// kubectl shows the status in the printer columns.
	out, errOut, err := kubectl(t, "get", "jwtp", "status", "-n", ns, "--no-headers")
	if err != nil {
		t.Fatalf("kubectl get: %v\n%s", err, errOut)
	}
	if f := strings.Fields(out); len(f) != 6 || f[1] != "Enforce" || f[2] != "True" || f[3] != "3" || f[4] != "0" {
		t.Errorf("kubectl get jwtp: got %q, want status, Enforce, True, 3, 0, age", out)
	}

	// A spec write bumps generation.
	got.Spec.Mode = authv1alpha1.ModeAudit
	if err := env.Client.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	if got.Generation != gen+1 {
		t.Errorf("spec update: generation %d, want %d", got.Generation, gen+1)
	}
}

// TestConditionsListMap proves conditions are a list-map keyed by type: two
// field managers applying different condition types through server-side
// apply keep both, which an atomic list would not.
func TestConditionsListMap(t *testing.T) {
	ns := newNamespace(t)
	ctx := context.Background()
	p := &authv1alpha1.JWTPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "conditions", Namespace: ns},
		Spec: authv1alpha1.JWTPolicySpec{Issuers: []authv1alpha1.Issuer{{
			Issuer: "https://idp.example.com",
			JWKS:   authv1alpha1.JWKSSource{URI: "https://idp.example.com/certs"},
		}}},
	}
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	apply := func(manager, condType string) {
		t.Helper()
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "auth.claimguard.dev/v1alpha1",
			"kind":       "JWTPolicy",
			"metadata":   map[string]any{"name": p.Name, "namespace": ns},
			"status": map[string]any{"conditions": []any{map[string]any{
				"type": condType, "status": "True", "reason": "Test", "message": "",
				"lastTransitionTime": metav1.Now().UTC().Format(time.RFC3339),
			}}},
		}}
		if err := env.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(manager), client.ForceOwnership); err != nil {
			t.Fatalf("apply %s: %v", condType, err)
		}
	}
	apply("manager-a", authv1alpha1.ConditionKeysLoaded)
	apply("manager-b", authv1alpha1.ConditionIngressesWired)
	got := &authv1alpha1.JWTPolicy{}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), got); err != nil {
		t.Fatal(err)
	}
	for _, ct := range []string{authv1alpha1.ConditionKeysLoaded, authv1alpha1.ConditionIngressesWired} {
		if meta.FindStatusCondition(got.Status.Conditions, ct) == nil {
			t.Errorf("condition %s lost: %+v", ct, got.Status.Conditions)
		}
	}
}

func kubectl(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	path := "/usr/bin/kubectl"
	if _, err := os.Stat(path); err != nil {
		path = "kubectl"
	}
	cmd := exec.Command(path, append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func TestKubectlAppliesSamples(t *testing.T) {
	ns := newNamespace(t)
	samples := filepath.Join(testenv.RepoRoot(), "config", "samples")
	if out, errOut, err := kubectl(t, "apply", "-n", ns, "-k", samples); err != nil {
		t.Fatalf("kubectl apply -k config/samples: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err := kubectl(t, "get", "jwtp", "-n", ns)
	if err != nil {
		t.Fatalf("kubectl get jwtp: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NAME MODE READY INGRESSES ROUTES AGE" {
		t.Errorf("printer columns: got %q", lines[0])
	}
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		rows[f[0]] = f
	}
	for name, mode := range map[string]string{"orders-api": "Enforce", "internal-tools": "Enforce", "billing-internal": "Enforce", "storefront-audit": "Audit"} {
		r, ok := rows[name]
		if !ok {
			t.Errorf("kubectl get jwtp does not list %s:\n%s", name, out)
			continue
		}
		// NAME MODE READY INGRESSES ROUTES AGE: READY, INGRESSES and ROUTES
		// stay empty until the controller writes status (there is none in this test).
		if len(r) != 3 || r[1] != mode {
			t.Errorf("row %s: got %q, want mode %s and empty status columns", name, r, mode)
		}
	}
}

func TestKubectlRefusesInvalidPolicies(t *testing.T) {
	ns := newNamespace(t)
	for _, tc := range invalidFromFiles(t) {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join("testdata", "invalid", tc.name+".yaml")
			out, errOut, err := kubectl(t, "apply", "-n", ns, "-f", file)
			if err == nil {
				t.Fatalf("kubectl apply accepted %s:\n%s", file, out)
			}
			if !strings.Contains(errOut, tc.field) || !strings.Contains(errOut, tc.message) {
				t.Errorf("kubectl error does not name %s with %q:\n%s", tc.field, tc.message, errOut)
			}
		})
	}
}

func TestKubectlExplain(t *testing.T) {
	out, errOut, err := kubectl(t, "explain", "jwtpolicy.spec.requiredClaims")
	if err != nil {
		t.Fatalf("kubectl explain: %v\n%s", err, errOut)
	}
	for _, want := range []string{"dotted path", "claim_missing", "operator", "ContainsAny", "values"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl explain jwtpolicy.spec.requiredClaims does not teach %q:\n%s", want, out)
		}
	}
	out, _, err = kubectl(t, "explain", "jwtp.spec.issuers.jwks")
	if err != nil || !strings.Contains(out, "secretRef") || !strings.Contains(out, "discovery") {
		t.Errorf("kubectl explain jwtp.spec.issuers.jwks: %v\n%s", err, out)
	}
}
