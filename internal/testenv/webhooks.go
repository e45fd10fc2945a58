package testenv

import (
	"fmt"
	"os/exec"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// WebhookConfigs renders config/webhook as `kubectl apply -k` would and returns its
// validating and mutating webhook configurations with every clientConfig turned into
// https://<addr><path> and no caBundle (the manager injects its own), ready to create on a
// test API server that reaches a manager process on addr.
func WebhookConfigs(addr string) ([]client.Object, error) {
	out, err := exec.Command("kubectl", "kustomize", RepoRoot()+"/config/webhook").Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize config/webhook: %w", err)
	}
	toURL := func(cc *admissionregistrationv1.WebhookClientConfig) {
		url := "https://" + addr + *cc.Service.Path
		cc.URL, cc.Service, cc.CABundle = &url, nil, nil
	}
	var objs []client.Object
	for _, doc := range strings.Split(string(out), "\n---\n") {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return nil, err
		}
		switch meta.Kind {
		case "ValidatingWebhookConfiguration":
			v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := yaml.Unmarshal([]byte(doc), v); err != nil {
				return nil, err
			}
			for i := range v.Webhooks {
				toURL(&v.Webhooks[i].ClientConfig)
			}
			objs = append(objs, v)
		case "MutatingWebhookConfiguration":
			m := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := yaml.Unmarshal([]byte(doc), m); err != nil {
				return nil, err
			}
			for i := range m.Webhooks {
				toURL(&m.Webhooks[i].ClientConfig)
			}
			objs = append(objs, m)
		}
	}
	if len(objs) < 2 {
		return nil, fmt.Errorf("config/webhook rendered %d webhook configurations, want the validating and the mutating one", len(objs))
	}
	return objs, nil
}
