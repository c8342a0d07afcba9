# trustmesh: the two commands of the quick start are `make demo` and `make test`.
SHELL := /bin/bash
GO    ?= go
BIN   := bin/trustmesh
TOOLS := $(CURDIR)/.tools

# Pinned tool versions: installed through the Go module proxy on first use.
GOLANGCI_LINT_VERSION      := v2.15.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

GOLANGCI_LINT      := $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION)/golangci-lint
PROTOC_GEN_GO      := $(TOOLS)/protoc-gen-go-$(PROTOC_GEN_GO_VERSION)/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(TOOLS)/protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)/protoc-gen-go-grpc
PROTOS := $(shell find api -name '*.proto')

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
## (its binaries live in /usr/lib/postgresql/N/bin, off PATH), for the postgres store's tests.
.PHONY: test-deps
test-deps:
	./scripts/ensure-packages.sh '/usr/lib/postgresql/*/bin/initdb:postgresql'

$(GOLANGCI_LINT):
	GOBIN=$(dir $@) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

$(PROTOC_GEN_GO):
	GOBIN=$(dir $@) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(PROTOC_GEN_GO_GRPC):
	GOBIN=$(dir $@) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

## generate: regenerate api/ from the .proto files (installs protoc from Debian if missing).
generate: $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC)
	./scripts/ensure-packages.sh protoc:protobuf-compiler
	protoc -I api \
	  --plugin=protoc-gen-go=$(PROTOC_GEN_GO) --plugin=protoc-gen-go-grpc=$(PROTOC_GEN_GO_GRPC) \
	  --go_out=api --go_opt=paths=source_relative \
	  --go-grpc_out=api --go-grpc_opt=paths=source_relative \
	  $(PROTOS)

## check-generated: fail if api/ differs from what the .proto files generate.
check-generated: generate
	@git diff --exit-code -- api/ || (echo "api/ is stale: run make generate and commit the result"; exit 1)

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
