# Sluice developer entry points. The README documents `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
CLUSTER := e2e/cluster
DEMO_NAMESPACE ?= sluice-demo
DEMO_DIR ?= $(or $(TMPDIR),/tmp)/sluice-demo

# cargo-fuzz targets (operator/fuzz, nightly toolchain), each run for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= schedule duration quantity report names

.PHONY: install-plugin fuzz bench chaos all build images release cluster-build cluster-up cluster-down crds lint tools-build unit-test e2e-test test demo demo-down demo-drift demo-undrift clean

all: build

build:
	$(CARGO) build -p sluice-operator -p sluice-plugin

# kubectl-sluice (the kubectl plugin) into PLUGIN_DIR, which must be on PATH for `kubectl sluice`.
PLUGIN_DIR ?= $(HOME)/.local/bin
install-plugin:
	$(CARGO) build --release -p sluice-plugin
	mkdir -p $(PLUGIN_DIR)
	install -m 0755 "$${CARGO_TARGET_DIR:-target}/release/kubectl-sluice" $(PLUGIN_DIR)/kubectl-sluice
	@echo "installed $(PLUGIN_DIR)/kubectl-sluice; try: kubectl sluice status"

# Kubernetes binaries (kube-apiserver, etcd, kwok, ...) built from the Go module registry, cached.
cluster-build:
	bash $(CLUSTER)/build.sh

# The checkers the install tests run, cached like the Kubernetes binaries: argocd, kube-score and
# Kueue's manager (for the Kueue e2e test) from the Go module registry, dashcheck (e2e/tools/dashcheck: the Grafana dashboards), checkov
# from PyPI, promtool and prometheus from Debian's package. The tests prepare them too when run
# alone.
tools-build:
	bash e2e/tools/build.sh
	bash e2e/tools/build-helper.sh dashcheck >/dev/null
	bash e2e/tools/checkov-venv.sh
	bash e2e/prometheus/install.sh >/dev/null

# Container images without Docker (images/<name>/: rootfs.sh and config.env; images/build.sh):
# docker-archives of localhost/<name>:dev in the cache, imported into the real node's containerd
# when the cluster at SLUICE_CLUSTER_DIR runs one. IMAGES names which (default: all of images/).
IMAGES ?= $(notdir $(patsubst %/config.env,%,$(wildcard images/*/config.env)))
images: release
	bash images/build.sh $(IMAGES)

# The release binary: the operator image's (images/sluice-operator), which the chart-on-the-
# real-node test installs.
release:
	$(CARGO) build --release -p sluice-operator

cluster-up: cluster-build
	bash $(CLUSTER)/up.sh

cluster-down:
	bash $(CLUSTER)/down.sh

# Regenerate crds/ from the Rust types (a test fails when they drift).
crds:
	rm -f crds/*.yaml
	$(CARGO) run -q -p sluice-operator -- crd --out-dir crds

# Helm chart files generated from others: the CRD templates (from crds/), manifests/install.yaml
# (the chart rendered with defaults) and manifests/argocd/argocd-cm.yaml (from the health checks).
# Tests in e2e/tests/install fail when any of them drifts.
.PHONY: chart
chart: cluster-build
	bash charts/sluice/hack/sync-crds.sh
	bash charts/sluice/hack/render-install.sh
	bash manifests/argocd/render-cm.sh

# Functions in operator/src longer than FN_MAX_LINES fail the lint (tests and type definitions
# aside); FN_LENGTH_ALLOW may list folders exempted while they are being split (none now).
FN_MAX_LINES ?= 80
FN_LENGTH_ALLOW ?=

lint:
	$(CARGO) fmt --all -- --check
	python3 e2e/tools/fn-lengths.py --max $(FN_MAX_LINES) $(addprefix --allow ,$(FN_LENGTH_ALLOW))
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit-test:
	$(CARGO) test -p sluice-operator

# End-to-end tests: start (or reuse) the local control plane, run the operator binary against it.
e2e-test: cluster-build tools-build build release
	$(CARGO) test -p sluice-e2e -- --test-threads=4

test: unit-test e2e-test

# Fuzz the input front ends (cron and time zones, durations, quantities, step reports, Job and
# label names) for FUZZ_SECONDS each; a crash leaves its input in operator/fuzz/artifacts/.
# Needs the nightly toolchain (`rustup toolchain install nightly`); cargo-fuzz is installed into
# the tool cache by operator/fuzz/cargo-fuzz.sh.
fuzz:
	bin="$$(bash operator/fuzz/cargo-fuzz.sh)"; export PATH="$$bin:$$PATH"; \
	cd operator/fuzz && for target in $(FUZZ_TARGETS); do \
		$(CARGO) +nightly fuzz run --sanitizer none $$target -- -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1; \
	done

# Benchmarks against the local control plane (e2e/bench/compare.rs, not part of `make test`):
# the release build of the operator beside the CronJob controller and the API server's own
# limit, every figure with its peer from the same run; the table goes to target/bench/
# (results.json, results.md). BENCH_ENV passes settings, e.g. BENCH_ENV='SLUICE_BENCH_N=100'.
# The older benchmarks run by hand: --test bench_schedule_lag, --test bench_backfill.
BENCH_ENV ?=
bench: cluster-build
	$(CARGO) build --release -p sluice-operator
	env $(BENCH_ENV) SLUICE_OPERATOR_BIN="$${CARGO_TARGET_DIR:-target}/release/sluice-operator" \
		$(CARGO) test --release -p sluice-e2e --test bench_compare -- --ignored --nocapture

# Fault tests in their full form (e2e/tests/chaos): 50 SIGKILLs of the operator during a
# 500-partition Backfill, API server and etcd restarts, leader failover; prints the figures.
# (`make test` runs the same tests in their short form: 10 kills, 100 partitions.)
chaos: cluster-build build
	SLUICE_CHAOS_FULL=1 $(CARGO) test -p sluice-e2e --test chaos -- --nocapture --test-threads=4

# The main job: a local cluster with the operator and the example pipelines running.
demo: cluster-build build
	bash e2e/demo.sh up

demo-down:
	bash e2e/demo.sh down

# Schema drift in the running demo (real node only): the shop changes orders.amount to double
# precision, the `orders` contract breaks and orders-transform holds; demo-undrift changes it back.
demo-drift:
	bash e2e/demo.sh drift

demo-undrift:
	bash e2e/demo.sh undrift

clean: cluster-down
	$(CARGO) clean
