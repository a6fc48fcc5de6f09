SHELL := /bin/bash
# podorder: `make demo` shows the main job on a real containerd; `make test` runs every test.
# Both need root (they start a private containerd) and install what they need into
# $(PODORDER_CACHE) (default /var/cache/podorder) on first use.
export PODORDER_CACHE ?= /var/cache/podorder
GO ?= go

STATICCHECK_VERSION ?= v0.8.2
STATICCHECK = $(PODORDER_CACHE)/tools/staticcheck-$(STATICCHECK_VERSION)
# The release's version, written once: the chart, the manifests' image tag and `make image` follow it
# (build/image/version_test.go keeps them so).
VERSION := $(shell cat VERSION)
IMAGE_TAG ?= v$(VERSION)
# `podorder version` and the daemon's first log line say the release the binary was built from
# (plugin/version; build/image injects it the same way).
GOFLAGS_STATIC = CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X github.com/podorder/podorder/plugin/version.stamped=$(VERSION)"

# Helm, for the chart's tests (lint, render, install on the real cluster), built from the module proxy.
HELM_VERSION ?= v3.22.0
export PODORDER_HELM ?= $(PODORDER_CACHE)/tools/helm-$(HELM_VERSION)/helm
UNIT_PACKAGES = $$($(GO) list ./... | grep -v /test/) ./test/checker/ ./test/stats/

.PHONY: all build image release test-release deps deps-k8s test test-unit test-e2e test-k8s demo bench scale fuzz fuzz-long soak mutants lint clean

all: build

build:
	$(GOFLAGS_STATIC) -o bin/podorder ./cmd/podorder
	$(GOFLAGS_STATIC) -o bin/podorder-hook ./cmd/podorder-hook
	$(GOFLAGS_STATIC) -o bin/kubectl-podorder ./cmd/kubectl-podorder

# podorder's image: the Dockerfile (the daemon and the hook, static, on an empty base) built with
# BuildKit by build/image, as an OCI archive in _output; the cluster tests build and run the same image.
image: deps _output
	$(GO) run ./build/image/cmd -o _output -tag $(IMAGE_TAG)

# A release, into dist/ (emptied first): the image for linux/amd64 and linux/arm64 under one index
# (the Dockerfile, built by BuildKit) as an OCI archive, the packaged chart, podorder for Linux and
# macOS and the hook for Linux on both architectures, an SPDX SBOM and SHA256SUMS (build/release;
# docs/install.md#releases). Needs root, as `make image` does.
release: deps $(PODORDER_HELM)
	rm -rf dist
	$(GO) run ./build/release/cmd -o dist

deps:
	hack/install-deps.sh

# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet and kubectl v1.37.2.
deps-k8s:
	hack/k8s/build.sh

$(STATICCHECK):
	mkdir -p $(dir $@)
	GOBIN=$(dir $@) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(dir $@)/staticcheck $@

$(PODORDER_HELM):
	mkdir -p $(dir $@)
	GOBIN=$(dir $@) CGO_ENABLED=0 $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

lint: $(STATICCHECK)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...

# Pure logic, the store, the hook and the probes against loopback: no root, no containerd, seconds.
# The fuzz targets' seed corpora (testdata/fuzz) run here too.
# The release test (root, BuildKit, helm) runs in test-release instead.
test-unit:
	$(GO) test -race -count=1 -skip '^TestTheReleaseOfThisCommit$$' $(UNIT_PACKAGES)

# `make release` into a temporary directory, every artifact opened and checked (build/release): the
# image index's two platforms and their binaries, the binaries' formats, SHA256SUMS, the SBOM against
# go.mod, the packaged chart linted and rendered. About 15 s warm; the first run cross-compiles for
# linux/arm64 and darwin (several minutes on a cold build cache).
test-release: deps $(PODORDER_HELM)
	$(GO) test -count=1 -timeout 30m -v -run '^TestTheReleaseOfThisCommit$$' ./build/release/ 2>&1 | grep -E '^\s*(=== RUN|--- |PASS|FAIL|ok|panic)|$(FAILURE_LINES)|release v' ; exit $${PIPESTATUS[0]}

# What a failing test prints besides its name (testify's report, t.Log lines), so that a CI log that
# shows only the filtered output still says why a test failed; the full output is in _output/.
FAILURE_LINES = ^\s+(Error Trace|Error|Test|Messages):|_test\.go:[0-9]+:

# The real-runtime scenarios: containerd v2.4.2 with NRI + runc v1.3.6, driven through CRI.
test-e2e: deps
	$(GO) test -p 1 -count=1 -timeout 30m -v ./test/harness/ ./test/image/ ./test/e2e/ 2>&1 | tee _output/e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|$(FAILURE_LINES)|DEMO|RESULT' ; exit $${PIPESTATUS[0]}

# The churn and fault campaign at full size: 200 pods with random dependency graphs (SOAK_ROUNDS rounds
# of them), three in four in network namespaces of their own, while podorder is killed -9 (20 times),
# containerd restarted (10), the store removed (4) and pods deleted (20), each while holds are in
# progress, and dependencies are SIGKILLed as they start listening; the checker reports every
# violation. test-e2e runs it with 16 pods.
# Then the same checker on the real kubelet (test/kubernetes, TestChurnOnARealKubelet): 40 Deployments
# and Jobs while podorder is upgraded from its previous release, its pod deleted, Deployments rolled
# and held pods deleted; test-k8s runs it with 8. Both run; the target fails if either does.
SOAK_PODS ?= 200
SOAK_ROUNDS ?= 1
SOAK_KUBE_PODS ?= 40
soak: deps deps-k8s _output
	@PODORDER_SOAK_PODS=$(SOAK_PODS) PODORDER_SOAK_ROUNDS=$(SOAK_ROUNDS) $(GO) test -count=1 -timeout 90m -v -run 'TestChurn' ./test/e2e/ 2>&1 | tee _output/soak.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|$(FAILURE_LINES)|RESULT|violation' ; cri=$${PIPESTATUS[0]}; \
	PODORDER_SOAK_KUBE_PODS=$(SOAK_KUBE_PODS) $(GO) test -count=1 -timeout 60m -v -run '^TestChurnOnARealKubelet$$' ./test/kubernetes/ 2>&1 | tee _output/soak-kube.log | grep -E '^\s*(=== RUN|--- |PASS|FAIL|ok|panic)|$(FAILURE_LINES)|RESULT|violation' ; kube=$${PIPESTATUS[0]}; \
	test $$cri -eq 0 -a $$kube -eq 0

# Planted bugs, each behind a build tag (mutant_<name>, in the mutant_*.go files next to the function
# it swaps): for each, the daemon and the hook are built with it and the proof campaign
# (TestCheckerCatchesPlantedBugs, fourteen fixed pods judged by test/checker) must report a
# violation; the real build ("none") must report none; and where a scenario test applies
# (MUTANT_SCENARIOS), it must fail under the mutant. Passes only if every mutant is caught.
MUTANTS = startedcounts previousattempt onedepignored nowake latereleased nohold
# Scenario tests that must fail under a mutant, where one applies.
MUTANT_SCENARIOS = startedcounts=TestAHeldDependencyCountsAsStartedOnlyOnceItsOwnProcessRuns \
	nohold=TestDependentDeclaredBeforeItsDependencyStartsAfterItIsReady
mutants: deps _output
	@start=$$(date +%s); failed=; \
	for m in none $(MUTANTS); do \
	  PODORDER_MUTANT=$$m $(GO) test -count=1 -timeout 5m -v -run 'TestCheckerCatchesPlantedBugs$$' ./test/e2e/ > _output/mutant-$$m.log 2>&1; rc=$$?; \
	  grep -hE 'RESULT|caught |missed |--- FAIL' _output/mutant-$$m.log | sed -E 's/^\s+//'; \
	  if [ $$rc -ne 0 ]; then failed="$$failed $$m"; fi; \
	done; \
	for ms in $(MUTANT_SCENARIOS); do \
	  m=$${ms%%=*}; test=$${ms#*=}; \
	  PODORDER_MUTANT=$$m $(GO) test -count=1 -timeout 5m -v -run "^$$test\$$" ./test/e2e/ > _output/mutant-$$m-scenario.log 2>&1; \
	  if grep -q -- "--- FAIL: $$test " _output/mutant-$$m-scenario.log; \
	  then echo "caught $$m by $$test"; else echo "missed $$m by $$test"; failed="$$failed $$m($$test)"; fi; \
	done; \
	echo "mutants: $$(( $$(date +%s) - start )) s"; \
	test -z "$$failed" || { echo "FAILED:$$failed (logs in _output/mutant-*.log)"; exit 1; }

# The cluster scenarios: a real one-node Kubernetes on the private containerd, podorder deployed
# with `kubectl apply -k daemonset/` as shipped (an overlay sets only the image tag and the API address),
# then with the Helm chart; pods created with kubectl.
test-k8s: deps deps-k8s $(PODORDER_HELM) _output
	$(GO) test -p 1 -count=1 -timeout 40m -v ./test/cluster/ ./test/chart/ ./test/kubernetes/ 2>&1 | tee _output/k8s.log | grep -E '^\s*(=== RUN|--- |PASS|FAIL|ok|panic)|$(FAILURE_LINES)|RESULT' ; exit $${PIPESTATUS[0]}

test: lint test-unit test-release _output test-e2e test-k8s

# The demo prints its own lines as they happen; everything else goes to _output/demo.log, shown
# when it fails.
demo: deps _output
	@echo "podorder demo: compiling the demo and podorder (about a minute on a cold cache)..."
	@$(GO) test -count=1 -timeout 10m -v -run 'TestDemo$$' ./test/e2e/ 2>&1 | tee _output/demo.log | sed -un 's/^DEMO //p'; \
	  status=$${PIPESTATUS[0]}; \
	  if [ $$status -ne 0 ]; then echo; echo "the demo FAILED; the end of its log follows, all of it is in _output/demo.log"; tail -40 _output/demo.log; fi; \
	  exit $$status

# Benchmarks that report with/without podorder and hook/polling side by side: the NRI handlers, the
# hook's wake-up, then the real runtime (TestMeasure: zero cost, release latency beside a polling
# entrypoint; TestScale: a node's worth of pods) as RESULT tables. Speed is reported, never asserted.
bench: deps deps-k8s _output
	$(GO) test -count=1 -run XXX -bench . -benchtime 2000x ./plugin/
	$(GO) test -count=1 -run XXX -bench Release -benchtime 100x ./hooks/
	PODORDER_BENCH=1 $(GO) test -p 1 -count=1 -timeout 80m -v -run 'TestMeasure|TestScale' ./test/e2e/ ./test/kubernetes/ 2>&1 | tee _output/bench.log | grep -E 'RESULT|^(--- |ok|FAIL)|$(FAILURE_LINES)' | sed -E 's/^\s+RESULT/RESULT/' ; exit $${PIPESTATUS[0]}

# A node's worth of ordered pods on the private containerd: 110 pods × 5 containers with
# dependencies, then 200 (1,000 containers) for a daemon restart. Reports podorder's memory, idle
# CPU, Synchronize time and CreateContainer handler time at that size; removes every pod after.
scale: deps _output
	PODORDER_SCALE=1 $(GO) test -count=1 -timeout 15m -v -run 'TestScale$$' ./test/e2e/ 2>&1 | tee _output/scale.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|$(FAILURE_LINES)|RESULT' | sed -E 's/^\s+RESULT/RESULT/' ; exit $${PIPESTATUS[0]}

# A short coverage-guided run of each fuzz target; fuzz-long is the campaign behind the numbers in
# docs/development.md (1,000,000 executions each). New crashers land in testdata/fuzz: commit them.
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime $(FUZZTIME) ./plugin/decl/
	$(GO) test -run XXX -fuzz FuzzPodState -fuzztime $(FUZZTIME) ./plugin/podstate/
	$(GO) test -run XXX -fuzz FuzzDecode -fuzztime $(FUZZTIME) ./hooks/tombstone/
	$(GO) test -run XXX -fuzz FuzzDiagReply -fuzztime $(FUZZTIME) ./plugin/probe/
	$(GO) test -run XXX -fuzz FuzzHealthServing -fuzztime $(FUZZTIME) ./plugin/probe/

fuzz-long:
	$(MAKE) fuzz FUZZTIME=1000000x

_output:
	mkdir -p _output

clean:
	rm -rf bin _output dist
