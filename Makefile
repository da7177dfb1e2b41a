# otlp-lb — build, test, demo. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo
PYTHON ?= python3
export TOOLS_DIR ?= $(HOME)/.cache/otlp-lb/tools
HELM ?= $(TOOLS_DIR)/bin/helm
CRD_FILE := crds/loadbalancedcollector.yaml
# The end-to-end tests (each also listed in e2e/Cargo.toml, with `test = false`).
E2E_TESTS := $(sort $(basename $(notdir $(wildcard e2e/tests/*.rs))))
# Every cargo command of `make test` selects the whole workspace with its dev-dependencies, so one feature set
# serves them all and nothing is compiled twice (`-p`, `--exclude` or `cargo build` would each resolve another).
CARGO_TEST := $(CARGO) test --workspace

.PHONY: golden help build test-build test unit python images e2e-images image-tests e2e e2e-rebalance tools tools-check demo demo-cluster demo-cluster-note bench ring-report fuzz crds crds-check chart lint fmt clean

help: ## this list
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## debug build of every binary
	$(CARGO) build --workspace --bins

test-build: ## compile every test, and the binaries the tests run, without running anything
	$(CARGO_TEST) --no-run $(E2E_TESTS:%=--test %) --lib --bins --tests --examples

test: test-build unit python crds-check chart image-tests e2e ## everything: unit, integration, Python SDK, chart, images, end-to-end

unit: ## unit and integration tests (no cluster needed)
	$(CARGO_TEST)

python: test-build ## the OpenTelemetry Python SDK as a client of otlp-lb
	$(PYTHON) -m pytest -q dataplane/tests/python

images: ## container images of otlp-lb and the operator: target/images/*.oci.tar and the podman store (CONTAINER_ENGINE=docker)
	bash images/build.sh

e2e-images: tools-check ## the test images of the end-to-end node: otelcol-lb (from make tools) and pause
	bash images/build.sh --e2e

image-tests: images e2e-images ## run each image as a kubelet would (user 65532, read-only root, volumes); prints sizes
	bash images/test.sh

e2e: test-build tools-check images e2e-images ## end-to-end tests on a real control plane and node (root; containerd, kubelet, kube-proxy, CoreDNS)
	$(CARGO_TEST) $(E2E_TESTS:%=--test %) -- --test-threads=1

e2e-rebalance: test-build tools-check images e2e-images ## scale a backend pool 3->5->2 under load (one load-balancer replica, then two with rollout restarts); ring update latency, split traces, lost spans
	$(CARGO_TEST) --test rebalance --test rebalance_replicas -- --nocapture --test-threads=1

bench: tools-check ## otlp-lb vs the Collector's loadbalancing exporter, pass-through, peers on/off, criterion, profile, flame graphs; writes bench/results.md (~18 min)
	@test -x $(TOOLS_DIR)/bin/inferno-flamegraph || cargo install --locked --quiet inferno --version 0.12.8 --root $(TOOLS_DIR)
	$(PYTHON) bench/macro.py --otelcol $(TOOLS_DIR)/bin/otelcol-lb

ring-report: tools-check ## per-sink shares and keys moved, the Collector's loadbalancing exporter and otlp-lb, N = 3..16 sinks; writes bench/ring_shares.md (~3 min)
	$(PYTHON) bench/ring_shares.py --otelcol $(TOOLS_DIR)/bin/otelcol-lb

fuzz: ## fuzz decoding and splitting for a bounded time (FUZZ_SECONDS per target, default 60)
	bash scripts/fuzz.sh

tools: ## build the pinned tools (kube-apiserver, kubelet, kube-proxy, etcd, CoreDNS, otelcol, telemetrygen, helm, kubectl, crictl) into $(TOOLS_DIR)
	bash e2e/tools/build-tools.sh

tools-check:
	@bash e2e/tools/build-tools.sh --check

demo: ## the data plane with three local sinks, then a fourth added live
	$(CARGO) build -p dataplane --bins
	bash scripts/demo.sh

demo-cluster: demo-cluster-note tools images e2e-images test-build ## the operator on a throwaway local cluster (root): helm install, the tail-sampling sample, traces through its Service, kubectl scale lbc 3 -> 5
	target/debug/otlp-lb-demo-cluster

demo-cluster-note:
	@echo "demo-cluster: builds what is missing first; from nothing that is the pinned tools (about 35 min on 2 cores) and the images (about 10 min), cached afterwards"

crds: ## regenerate the CRD from the operator's types (crds/ and the chart's copy)
	$(CARGO) run -q -p operator --bin otlp-lb-operator -- crd > $(CRD_FILE)
	cp $(CRD_FILE) charts/otlp-lb/crds/loadbalancedcollector.yaml

golden: ## regenerate the operator's golden files (review the diff)
	UPDATE_GOLDEN=1 $(CARGO_TEST) --test golden

crds-check: ## fail when crds/ differs from the code
	$(CARGO_TEST) -q --test crd

chart: tools-check ## helm lint and template (also with the dashboard, the alerts and the data-plane ServiceMonitor on)
	$(HELM) lint --strict charts/otlp-lb
	$(HELM) template otlp-lb charts/otlp-lb --namespace otlp-lb-system > /dev/null
	$(HELM) template otlp-lb charts/otlp-lb --set 'watchNamespaces={a,b}' --set metrics.serviceMonitor.enabled=true > /dev/null
	$(HELM) template otlp-lb charts/otlp-lb --set grafanaDashboard.enabled=true --set prometheusRule.enabled=true \
	  --set prometheusRule.for.OtlpLbBackendEjected=30m --set metrics.dataPlaneServiceMonitor.enabled=true > /dev/null

lint: ## clippy and rustfmt
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
