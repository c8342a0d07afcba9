# trustmesh: the two commands of the quick start are `make demo` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/trustmesh
TOOLS := $(CURDIR)/.tools

# Pinned tool versions: installed through the Go module proxy on first use.
GOLANGCI_LINT_VERSION      := v2.15.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
CONTROLLER_GEN_VERSION     := v0.19.0
HELM_VERSION               := v3.19.5

GOLANGCI_LINT      := $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
PROTOC_GEN_GO      := $(TOOLS)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(TOOLS)/protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)/protoc-gen-go-grpc
CONTROLLER_GEN     := $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION)/controller-gen
HELM               := $(TOOLS)/helm-$(HELM_VERSION)/helm
PROTOS := $(shell find api -name '*.proto')

# The Kubernetes tests run a real kube-apiserver and etcd (controller-runtime's envtest), built
# from their Go modules by test/k8s/build-bins.sh into a per-machine cache (about 5 minutes, once);
# keep the versions in step with the script's defaults and go.mod's k8s.io modules.
# KUBEBUILDER_ASSETS is where the tests find them: set it to use other binaries.
K8S_VERSION        := 1.34.0
ETCD_VERSION       := 3.6.16
K8S_BIN_DIR        ?= $(or $(TRUSTMESH_K8S_BIN_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/trustmesh/k8s/kube-apiserver-$(K8S_VERSION)-etcd-$(ETCD_VERSION))
KUBEBUILDER_ASSETS ?= $(K8S_BIN_DIR)
test unit e2e: export KUBEBUILDER_ASSETS := $(KUBEBUILDER_ASSETS)
# The chart's tests (internal/k8s/install) run helm lint and helm template with this binary.
test unit: export TRUSTMESH_HELM := $(HELM)
test-deps: $(HELM)

# What controller-gen generates from the Go types: deepcopy functions and the CRDs (committed).
K8S_API_PKGS  := ./internal/k8s/apis/...
K8S_DEEPCOPY  := internal/policy/zz_generated.deepcopy.go internal/k8s/apis/v1/zz_generated.deepcopy.go
K8S_CRD_DIR   := deploy/crds
K8S_CRD_GLOB  := trustmesh.dev_*.yaml

.PHONY: all build demo test unit e2e lint generate check-generated bench bench-smoke fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/trustmesh

## demo: server + agent + a workload fetching its SVID, printed.
demo: build
	./scripts/demo.sh

## test: the whole suite: lint, generated code check, unit and end-to-end tests.
test: test-deps lint check-generated
	$(GO) test -race -count=1 -timeout 20m ./...

unit: test-deps
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /test/e2e)

e2e: test-deps
	$(GO) test -race -count=1 -v -timeout 15m ./test/e2e/...

lint: $(GOLANGCI_LINT)
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GOLANGCI_LINT) run ./...

## test-deps: install what the tests need besides Go modules: PostgreSQL's server
## (its binaries live in /usr/lib/postgresql/N/bin, off PATH), for the postgres store's tests;
## kube-apiserver and etcd, built once into $(K8S_BIN_DIR), for the Kubernetes tests.
.PHONY: test-deps
test-deps:
	./scripts/ensure-packages.sh '/usr/lib/postgresql/*/bin/initdb:postgresql' kubectl:kubernetes-client iptables-restore:iptables ip:iproute2
	TRUSTMESH_K8S_BIN_DIR='$(K8S_BIN_DIR)' K8S_VERSION=$(K8S_VERSION) ETCD_VERSION=$(ETCD_VERSION) test/k8s/build-bins.sh >/dev/null

$(GOLANGCI_LINT):
	GOBIN=$(dir $@) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

$(PROTOC_GEN_GO):
	GOBIN=$(dir $@) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(PROTOC_GEN_GO_GRPC):
	GOBIN=$(dir $@) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

$(CONTROLLER_GEN):
	GOBIN=$(dir $@) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

# Helm, built as its release is (-X: its version, and the Kubernetes version it assumes without a
# cluster: its client-go's, 1.34; go install alone leaves 1.20, below the chart's kubeVersion).
# About 3 minutes, once.
$(HELM):
	GOBIN=$(dir $@) $(GO) install -trimpath -ldflags "-s -w \
	  -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=34 \
	  -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=34" \
	  helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

## manifests: copy deploy/crds/ into the Helm chart (its crds/) and render the chart with its
## default values, plus the Namespace, into deploy/manifests/trustmesh.yaml (what
## `trustmesh install --dry-run` prints). Part of generate.
CHART := deploy/helm/trustmesh
.PHONY: manifests
manifests: $(HELM)
	rm -f $(CHART)/crds/*.yaml && cp $(K8S_CRD_DIR)/$(K8S_CRD_GLOB) $(CHART)/crds/
	@{ echo '# trustmesh for Kubernetes: the Helm chart $(CHART) with its default values and the Namespace.'; \
	  echo '# Generated by `make manifests` (helm $(HELM_VERSION) template --include-crds); do not edit.'; \
	  echo '# trustmesh install --dry-run [--namespace NS] [--trust-domain TD] prints it for another namespace or trust domain.'; \
	  $(HELM) template trustmesh $(CHART) --namespace trustmesh-system --set createNamespace=true --include-crds; \
	} > deploy/manifests/trustmesh.yaml.tmp && mv deploy/manifests/trustmesh.yaml.tmp deploy/manifests/trustmesh.yaml \
	  || { rm -f deploy/manifests/trustmesh.yaml.tmp; exit 1; }

# k8s-generate writes the deepcopy functions next to their types and the CRDs into $(K8S_CRD_DIR);
# given a directory, it writes them under it instead, at the same paths. One shell line.
k8s-generate = $(CONTROLLER_GEN) object paths=./internal/policy/ $(if $(1),output:object:dir=$(1)/internal/policy) && \
	$(CONTROLLER_GEN) object paths=$(K8S_API_PKGS) $(if $(1),output:object:dir=$(1)/internal/k8s/apis/v1) && \
	mkdir -p $(or $(1),.)/$(K8S_CRD_DIR) && rm -f $(or $(1),.)/$(K8S_CRD_DIR)/$(K8S_CRD_GLOB) && \
	$(CONTROLLER_GEN) crd paths=$(K8S_API_PKGS) output:crd:dir=$(or $(1),.)/$(K8S_CRD_DIR)

## generate: regenerate api/ from the .proto files (installs protoc from Debian if missing);
## the deepcopy functions and deploy/crds/ from the Go types (controller-gen).
generate: $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC) $(CONTROLLER_GEN)
	./scripts/ensure-packages.sh protoc:protobuf-compiler
	protoc -I api \
	  --plugin=protoc-gen-go=$(PROTOC_GEN_GO) --plugin=protoc-gen-go-grpc=$(PROTOC_GEN_GO_GRPC) \
	  --go_out=api --go_opt=paths=source_relative \
	  --go-grpc_out=api --go-grpc_opt=paths=source_relative \
	  $(PROTOS)
	$(call k8s-generate)
	$(MAKE) --no-print-directory manifests

## check-generated: fail if api/ differs from what the .proto files generate, or the deepcopy
## functions or deploy/crds/ from what the Go types generate. The latter are compared with the
## working tree (fresh output in a scratch directory), so new and removed files count too.
check-generated: $(CONTROLLER_GEN)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && $(call k8s-generate,$$tmp) && \
	for f in $(K8S_DEEPCOPY) $$(cd "$$tmp" && ls $(K8S_CRD_DIR)/$(K8S_CRD_GLOB)) $$(ls $(K8S_CRD_DIR)/$(K8S_CRD_GLOB) 2>/dev/null); do \
	  cmp -s "$$tmp/$$f" "$$f" || { echo "$$f is stale: run make generate and commit the result"; exit 1; }; \
	done
	@$(MAKE) --no-print-directory generate
	@git diff --exit-code -- api/ || (echo "api/ is stale: run make generate and commit the result"; exit 1)
	@git diff --exit-code -- $(CHART)/crds/ deploy/manifests/ || (echo "$(CHART)/crds/ or deploy/manifests/ is stale: run make manifests and commit the result"; exit 1)

## bench: Go benchmarks (figures, not pass/fail): CA, store, audit chain, issuance, proxy, policy engine vs OPA, path normalization;
## then bench/run.sh: direct vs trustmesh vs HAProxy with fortio, report in bench/results/ (BENCH_SECONDS=30 per run).
## The HA control plane (two servers on PostgreSQL vs one on SQLite) is apart: make bench-ha.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/ca/ ./internal/store/sqlite/ ./internal/store/auditchain/ ./internal/audit/ ./internal/server/ ./internal/proxy/ ./internal/policy/authz/ ./internal/policy/rego/ ./internal/httpnorm/ ./test/e2e/
	bench/run.sh

## bench-ha: bench/ha.sh: config push convergence from a write on replica B to the ACK of 100 and 1,000 proxy
## streams spread over replicas A and B on a throwaway PostgreSQL, object writes per second, the same on
## SQLite; report in bench/results/DATE-TIME-ha.md (BENCH_STREAMS, BENCH_CHANGES; not part of make test).
.PHONY: bench-ha
bench-ha:
	bench/ha.sh

## bench-smoke: bench/run.sh with 2 s per run (checks the harness, not the figures; not part of make test).
bench-smoke:
	BENCH_SECONDS=2 bench/run.sh

## fuzz: run every fuzz target briefly (FUZZTIME=30s to change).
FUZZTIME ?= 15s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
