# Sluice developer entry points. The README documents `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
CLUSTER := e2e/cluster
DEMO_NAMESPACE ?= sluice-demo
DEMO_DIR ?= $(or $(TMPDIR),/tmp)/sluice-demo

.PHONY: all build cluster-build cluster-up cluster-down crds lint unit-test e2e-test test demo demo-down clean

all: build

build:
	$(CARGO) build -p sluice-operator

# Kubernetes binaries (kube-apiserver, etcd, kwok, ...) built from the Go module registry, cached.
cluster-build:
	bash $(CLUSTER)/build.sh

cluster-up: cluster-build
	bash $(CLUSTER)/up.sh

cluster-down:
	bash $(CLUSTER)/down.sh

# Regenerate crds/ from the Rust types (a test fails when they drift).
crds:
	rm -f crds/*.yaml
	$(CARGO) run -q -p sluice-operator -- crd --out-dir crds

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit-test:
	$(CARGO) test -p sluice-operator

# End-to-end tests: start (or reuse) the local control plane, run the operator binary against it.
e2e-test: cluster-build build
	$(CARGO) test -p sluice-e2e -- --test-threads=4

test: unit-test e2e-test

# The main job: a local cluster with the operator and the example pipelines running.
demo: cluster-build build
	bash e2e/demo.sh up

demo-down:
	bash e2e/demo.sh down

clean: cluster-down
	$(CARGO) clean
