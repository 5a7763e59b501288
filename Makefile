# Tether. `make demo` runs the main job, `make test` runs every test.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
LDFLAGS := -X tether.dev/tether/internal/cli.Version=$(VERSION)
# The nested modules of the test rig, tested and linted on their own.
RIG_MODULES := hack/rig/kube hack/rig/etcd hack/rig/node
# The agent chart's test, a module of its own so that Helm's dependencies
# never move the main module's versions.
CHART_MODULE := deploy/helm/chartest
GO_TEST_FLAGS ?= -race -count=1 -timeout=45m
# Where tests save what a person may want to look at afterwards (the web
# console's screenshots from the real browser, TestConsole).
export TETHER_TEST_ARTIFACTS ?= $(CURDIR)/test-artifacts

.PHONY: build test demo lint deps rig fuzz bench release

build:
	go build -ldflags "$(LDFLAGS)" -o bin/tether ./cmd/tether

deps:
	@hack/deps.sh

# Build (or find in the cache) the Kubernetes binaries before the tests, so a
# cold build does not count against a test's timeout.
rig: deps
	go run ./test/rig/cmd/rig build

test: deps rig lint
	go test $(GO_TEST_FLAGS) ./...
	cd hack/rig/node && go test $(GO_TEST_FLAGS) ./...
	cd $(CHART_MODULE) && go test $(GO_TEST_FLAGS) ./...

demo: deps
	go run ./test/demo

lint:
	@out=$$(gofmt -l . ); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	@for m in $(RIG_MODULES) $(CHART_MODULE); do (cd $$m && go vet ./...) || exit 1; done

# The performance harness (docs/performance.md): hub, agent and a trivial
# backend on loopback, every figure against the direct path in the same
# run, the real cluster last. Prints one table, writes BENCH_OUT as JSON.
BENCH_OUT ?= bench.json
bench: deps rig
	go run ./test/bench/cmd/bench -out $(BENCH_OUT) $(BENCH_FLAGS)

# Release artifacts in RELEASE_OUT (hack/release): static binaries for
# linux, darwin and windows on amd64 and arm64, stamped with the version (the
# tag at HEAD, else v0.0.0-dev.COMMIT; RELEASE_FLAGS="-version v1.2.3"
# overrides), in reproducible archives, with checksums.txt and the krew
# manifest tether.yaml. The container image: see Dockerfile.
RELEASE_OUT ?= dist
release:
	rm -rf $(RELEASE_OUT)
	go run ./hack/release -out $(RELEASE_OUT) $(RELEASE_FLAGS)

# Every native fuzz target, fuzzed for FUZZTIME each, one after another
# (make fuzz FUZZTIME=10m). Their seed corpora (f.Add and testdata/fuzz) run
# with every go test; what fuzzing finds is written to testdata/fuzz.
FUZZTIME ?= 30s
FUZZ_TARGETS := \
	./internal/tunnel:FuzzFrameWatcher \
	./internal/tunnel:FuzzHandshakeMessage \
	./internal/tunnel:FuzzSessionInput \
	./internal/tunnel:FuzzDialResponse \
	./internal/tunnel:FuzzAcceptRequest \
	./internal/hub:FuzzGatewayPath \
	./internal/hub:FuzzPeerProof \
	./internal/store:FuzzValidateName \
	./internal/store:FuzzParseClusterID \
	./internal/access:FuzzParseScope \
	./internal/access:FuzzLookupRole \
	./internal/access:FuzzValidateObjectID \
	./internal/access:FuzzDecisions \
	./internal/access:FuzzParseRequest \
	./internal/access:FuzzParseRequestLikeAPIServer \
	./internal/identity:FuzzPeek \
	./internal/identity:FuzzTrusts \
	./internal/identity:FuzzVerify \
	./internal/identity:FuzzClaims \
	./internal/identity:FuzzGroupSource \
	./internal/identity:FuzzAssertionVerify \
	./internal/agentkey:FuzzParse \
	./internal/authheader:FuzzBearer \
	./internal/authheader:FuzzStripImpersonation \
	./internal/localproxy:FuzzProxyGate \
	./internal/kubeconfig:FuzzMerge \
	./internal/credentials:FuzzExecCredential \
	./internal/credentials:FuzzCacheEntry \
	./internal/credentials:FuzzParseDiscovery \
	./internal/credentials:FuzzJWTClaim \
	./internal/issuer:FuzzNormalizeUserCode \
	./internal/issuer:FuzzParseLoopbackRedirect \
	./internal/console:FuzzReturnTo \
	./internal/issuer:FuzzRefreshToken \
	./internal/audit:FuzzComputeHash \
	./internal/audit:FuzzVerify \
	./internal/cli:FuzzOutputQuery

fuzz:
	@failed=; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== $$name ($$pkg), $(FUZZTIME)"; \
		go test -run='^$$' -fuzz="^$$name\$$" -fuzztime=$(FUZZTIME) $$pkg || failed="$$failed $$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz targets that failed:$$failed"; exit 1; fi
