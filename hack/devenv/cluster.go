package main

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

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// Names of the dev environment's cluster.
const (
	// systemNamespace is claimguard's own namespace, as in a real install: the self-managed
	// webhook certificate Secret lives there.
	systemNamespace = "claimguard-system"
	// serviceAccount is the identity the manager runs as (a client certificate with the
	// service account's user name): the guard trusts that user's Ingress writes, and RBAC
	// gives it exactly the rules of config/rbac/role.yaml.
	serviceAccount = "claimguard"
	// devNamespace holds the dev policy, samplesNamespace the policies of config/samples.
	devNamespace     = "dev"
	devPolicy        = "orders"
	samplesNamespace = "samples"
)

// decodeYAML splits a multi-document YAML stream into objects, skipping empty documents.
func decodeYAML(data []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &obj.Object); err != nil {
			return nil, err
		}
		if len(obj.Object) > 0 {
			objs = append(objs, obj)
		}
	}
}

// createNamespaces creates the namespaces of the dev environment.
func createNamespaces(ctx context.Context, c client.Client) error {
	for _, name := range []string{systemNamespace, devNamespace, samplesNamespace} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			return fmt.Errorf("create namespace %s: %w", name, err)
		}
	}
	return nil
}

// installRBAC grants the manager's user the generated rules of config/rbac/role.yaml (the
// ClusterRole cluster-wide, the Role in claimguard's namespace), the same the Helm chart
// and config/default grant, so the dev manager fails here first if a rule is missing.
func installRBAC(ctx context.Context, c client.Client, root string) error {
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "role.yaml"))
	if err != nil {
		return err
	}
	objs, err := decodeYAML(data)
	if err != nil {
		return fmt.Errorf("config/rbac/role.yaml: %w", err)
	}
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: serviceAccount, Namespace: systemNamespace}
	for _, o := range objs {
		name := "claimguard-" + o.GetName()
		o.SetName(name)
		switch o.GetKind() {
		case "ClusterRole":
			binding := &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
				Subjects:   []rbacv1.Subject{subject},
			}
			if err := createAll(ctx, c, o, binding); err != nil {
				return err
			}
		case "Role":
			o.SetNamespace(systemNamespace)
			binding := &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: systemNamespace},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
				Subjects:   []rbacv1.Subject{subject},
			}
			if err := createAll(ctx, c, o, binding); err != nil {
				return err
			}
		}
	}
	return nil
}

func createAll(ctx context.Context, c client.Client, objs ...client.Object) error {
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			return fmt.Errorf("create %T %s: %w", o, o.GetName(), err)
		}
	}
	return nil
}

// installWebhooks installs config/webhook (built with kubectl's kustomize, so the
// namespace selectors and timeouts are the real ones) with every clientConfig turned into
// https://<addr><path>: the manager runs on this machine, not behind a Service. The
// manager's self-managed rotator injects its CA into both configurations and serves a
// certificate for 127.0.0.1 (--webhook-cert-extra-sans).
func installWebhooks(ctx context.Context, c client.Client, root, addr string) error {
	kustomize := exec.CommandContext(ctx, "kubectl", "kustomize", filepath.Join(root, "config", "webhook"))
	var stderr bytes.Buffer
	kustomize.Stderr = &stderr
	out, err := kustomize.Output()
	if err != nil {
		return fmt.Errorf("kubectl kustomize config/webhook: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	objs, err := decodeYAML(out)
	if err != nil {
		return err
	}
	toURL := func(cc *admissionregistrationv1.WebhookClientConfig) {
		url := "https://" + addr + *cc.Service.Path
		cc.URL, cc.Service, cc.CABundle = &url, nil, nil
	}
	for _, o := range objs {
		var obj client.Object
		switch o.GetKind() {
		case "ValidatingWebhookConfiguration":
			v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, v); err != nil {
				return err
			}
			for i := range v.Webhooks {
				toURL(&v.Webhooks[i].ClientConfig)
			}
			obj = v
		case "MutatingWebhookConfiguration":
			m := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, m); err != nil {
				return err
			}
			for i := range m.Webhooks {
				toURL(&m.Webhooks[i].ClientConfig)
			}
			obj = m
		default:
			continue
		}
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("create %s %s: %w", o.GetKind(), o.GetName(), err)
		}
	}
	return nil
}

// applySamples creates every object of config/samples (the files its kustomization lists)
// in the samples namespace.
func applySamples(ctx context.Context, c client.Client, root string) (int, error) {
	dir := filepath.Join(root, "config", "samples")
	data, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return 0, err
	}
	var k struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(data, &k); err != nil {
		return 0, fmt.Errorf("config/samples/kustomization.yaml: %w", err)
	}
	policies := 0
	for _, f := range k.Resources {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return 0, err
		}
		objs, err := decodeYAML(data)
		if err != nil {
			return 0, fmt.Errorf("config/samples/%s: %w", f, err)
		}
		for _, o := range objs {
			o.SetNamespace(samplesNamespace)
			if err := c.Create(ctx, o); err != nil {
				return 0, fmt.Errorf("config/samples/%s: create %s %s: %w", f, o.GetKind(), o.GetName(), err)
			}
			if o.GetKind() == "JWTPolicy" {
				policies++
			}
		}
	}
	return policies, nil
}

// devPolicyObject is the dev policy: tokens of the dev issuer, signed by the dev key
// (inline), for audience orders-api, with the scope orders:read; three claims are
// forwarded.
func devPolicyObject(jwks string) *authv1alpha1.JWTPolicy {
	return &authv1alpha1.JWTPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: authv1alpha1.GroupVersion.String(), Kind: "JWTPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: devPolicy, Namespace: devNamespace},
		Spec: authv1alpha1.JWTPolicySpec{
			Issuers: []authv1alpha1.Issuer{{
				Issuer:     devIssuer,
				Audiences:  []string{devAudience},
				Algorithms: []authv1alpha1.Algorithm{authv1alpha1.ES256},
				JWKS:       authv1alpha1.JWKSSource{Inline: jwks},
			}},
			RequiredClaims: []authv1alpha1.RequiredClaim{
				{Claim: "scope", Operator: authv1alpha1.OpContainsAll, Values: []string{"orders:read"}},
			},
			ForwardClaims: []authv1alpha1.ForwardClaim{
				{Claim: "sub", Header: "X-Auth-Subject"},
				{Claim: "email", Header: "X-Auth-Email"},
				{Claim: "roles", Header: "X-Auth-Roles"},
			},
			PublicPaths: []string{"/healthz"},
		},
	}
}

// exportPolicy writes the dev policy as the API server holds it (with the webhook's
// defaults) to path, in the form `claimguard explain --policy-file` and `serve` read.
func exportPolicy(ctx context.Context, c client.Client, path string) error {
	p := &authv1alpha1.JWTPolicy{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: devNamespace, Name: devPolicy}, p); err != nil {
		return err
	}
	doc := map[string]any{
		"apiVersion": authv1alpha1.GroupVersion.String(),
		"kind":       "JWTPolicy",
		"metadata":   map[string]any{"name": p.Name, "namespace": p.Namespace},
		"spec":       p.Spec,
	}
	data, err := yaml.Marshal(doc)
	if err != nil {
		return err
	}
	header := "# The dev policy, exported by make dev from the API server, for claimguard explain and serve.\n"
	return os.WriteFile(path, append([]byte(header), data...), 0o644)
}
