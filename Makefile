# claimguard Makefile. `make help` lists the targets.

# Tools are pinned and installed into bin/ with `go install`.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
HELM_VERSION ?= v4.3.2

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen
HELM ?= $(LOCALBIN)/helm
# kube-apiserver and etcd for envtest, built from the Go module proxy.
KUBEBUILDER_ASSETS ?= $(LOCALBIN)/k8s
export KUBEBUILDER_ASSETS

IMG ?= ghcr.io/claimguard/claimguard:dev
GO_TEST_FLAGS ?= -race -count=1
FUZZSCALE ?= 1

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate the CRD, RBAC and webhook manifests under config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./api/..." paths="./controllers/..." \
		paths="./webhook/..." paths="./internal/certs/..." \
		output:crd:artifacts:config=config/crd/bases \
		output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook
	@# The Helm chart ships the same CRDs and renders its RBAC from the same rules.
	rm -f charts/claimguard/crds/*.yaml
	cp config/crd/bases/*.yaml charts/claimguard/crds/
	cp config/rbac/role.yaml charts/claimguard/files/role.yaml

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods of the API types.
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -s -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: verify
verify: manifests generate ## Fail when generated files or formatting are stale.
	@hack/verify.sh

.PHONY: test
test: controlplane helm verify vet ## Run every test on a real control plane, then a short fuzz run.
	go test $(GO_TEST_FLAGS) ./...
	FUZZSCALE=$(FUZZSCALE) hack/fuzz.sh

.PHONY: test-fuzz
test-fuzz: ## Run every fuzz target, about 10 s each (FUZZSCALE=18: about 3 minutes each).
	FUZZSCALE=$(FUZZSCALE) hack/fuzz.sh

.PHONY: bench
bench: ## Run the Go benchmarks.
	go test -run '^$$' -bench . -benchmem ./internal/...

##@ Build

.PHONY: reliability
reliability: controlplane ## Run the long reliability scenarios (60s wrk soak, 10,000 policies in a cluster, 1,000,000 tokens); see docs/reliability.md.
	hack/reliability/soak.sh
	go run ./hack/reliability/policies10k
	hack/reliability/token-cache.sh

.PHONY: build
build: ## Build bin/claimguard.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/claimguard .

.PHONY: dev
dev: ## Start a local control plane, run claimguard on it and print requests to try (Ctrl-C stops all).
	hack/dev.sh

.PHONY: run
run: ## Run the manager against the cluster in KUBECONFIG.
	go run . manager --leader-elect=false

.PHONY: helm-lint
helm-lint: helm ## Lint the Helm chart.
	$(HELM) lint --strict charts/claimguard

.PHONY: docker-build
docker-build: ## Build the container image IMG (needs a Docker engine).
	docker build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the container image IMG.
	docker push $(IMG)

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster in KUBECONFIG.
	kubectl apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs from the cluster in KUBECONFIG.
	kubectl delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy claimguard (config/default) with image IMG to the cluster in KUBECONFIG.
	@tmp=$$(mktemp -d "$(CURDIR)/config/.deploy-XXXXXX"); trap 'rm -rf "$$tmp"' EXIT; \
	printf 'resources:\n- ../default\npatches:\n- target: {kind: Deployment, name: claimguard-controller-manager}\n  patch: |-\n    - {op: replace, path: /spec/template/spec/containers/0/image, value: "%s"}\n' '$(IMG)' > "$$tmp/kustomization.yaml"; \
	kubectl apply --server-side -k "$$tmp"

.PHONY: undeploy
undeploy: ## Remove claimguard (config/default) from the cluster in KUBECONFIG. Delete JWTPolicies first.
	kubectl delete --ignore-not-found -k config/default

##@ Tools

.PHONY: controlplane
controlplane: ## Build kube-apiserver and etcd for envtest into bin/k8s (once).
	hack/build-controlplane.sh $(KUBEBUILDER_ASSETS)

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)-$(CONTROLLER_TOOLS_VERSION) ## Install controller-gen into bin/.
	@ln -sf $(CONTROLLER_GEN)-$(CONTROLLER_TOOLS_VERSION) $(CONTROLLER_GEN)
$(CONTROLLER_GEN)-$(CONTROLLER_TOOLS_VERSION):
	hack/go-install.sh $@ sigs.k8s.io/controller-tools/cmd/controller-gen $(CONTROLLER_TOOLS_VERSION)

.PHONY: helm
helm: $(HELM)-$(HELM_VERSION) ## Install helm into bin/.
	@ln -sf $(HELM)-$(HELM_VERSION) $(HELM)
$(HELM)-$(HELM_VERSION):
	hack/go-install.sh $@ helm.sh/helm/v4/cmd/helm $(HELM_VERSION)
