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
FUZZTIME ?= 10s

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
test: controlplane verify vet ## Run every test on a real control plane, then a short fuzz run.
	go test $(GO_TEST_FLAGS) ./...
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

.PHONY: test-fuzz
test-fuzz: ## Run every fuzz target for FUZZTIME each (default 10s).
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

.PHONY: bench
bench: ## Run the Go benchmarks.
	go test -run '^$$' -bench . -benchmem ./internal/...

##@ Build

.PHONY: build
build: ## Build bin/claimguard.
	CGO_ENABLED=0 go build -trimpath -o $(LOCALBIN)/claimguard .

.PHONY: run
run: ## Run the manager against the cluster in KUBECONFIG.
	go run . manager --leader-elect=false

.PHONY: docker-build
docker-build: ## Build the container image IMG (needs a Docker engine).
	docker build -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the cluster in KUBECONFIG.
	kubectl apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs from the cluster in KUBECONFIG.
	kubectl delete --ignore-not-found -k config/crd

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
