# Tether. `make demo` runs the main job, `make test` runs every test.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
LDFLAGS := -X tether.dev/tether/internal/cli.Version=$(VERSION)
# The nested modules of the test rig, tested and linted on their own.
RIG_MODULES := hack/rig/kube hack/rig/etcd hack/rig/node
# The agent chart's test, a module of its own so that Helm's dependencies
# never move the main module's versions.
CHART_MODULE := deploy/helm/chartest
GO_TEST_FLAGS ?= -race -count=1 -timeout=45m

.PHONY: build test demo lint deps rig

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
