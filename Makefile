# Switchboard — every target CI uses is here, so they cannot drift.
GO        ?= go
BIN       := bin/switchboard
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
CONFIG    ?= configs/switchboard.example.yaml
FUZZTIME  ?= 10s

.PHONY: all build run test lint fmt vet tidy bench fuzz chaos clean deps

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/switchboard

run: build
	./$(BIN) serve --config $(CONFIG)

# deps installs what the tests need (redis-server) when it is missing.
deps:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

test: deps lint
	@rm -f bin/fault-report.txt
	$(GO) test -race -count=1 -timeout 8m ./...
	@cat bin/fault-report.txt 2>/dev/null || true

lint: vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')

tidy:
	$(GO) mod tidy

# bench: Go micro-benchmarks beside the code, then the harness (test/bench):
# floor server, ingest, end to end, memory; writes bench-results.md.
# BENCH_SHORT=1 for a quick pass, BENCH_RUNS / BENCH_SECONDS to tune.
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1s ./...
	BENCH_OUT=bench-results.md $(GO) run ./test/bench

# chaos: the long fault suite (kills, Redis restarts and outages under load).
chaos: deps
	CHAOS=1 $(GO) test -count=1 -timeout 15m -run TestFaultSuite -v ./test/

# fuzz runs every fuzz target for FUZZTIME. A run that ends with only
# "context deadline exceeded" hit Go's known race between -fuzztime and the
# minimizing of a new interesting input (no failing input was found); only
# a written failing input fails the target.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; \
	    out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg 2>&1); rc=$$?; \
	    echo "$$out" | tail -3; \
	    if [ $$rc -ne 0 ]; then \
	      if echo "$$out" | grep -q 'Failing input written' || ! echo "$$out" | grep -q 'context deadline exceeded'; then \
	        echo "$$out"; exit 1; \
	      fi; \
	      echo "  (deadline hit while minimizing an interesting input; no failure found)"; \
	    fi; \
	  done; \
	done

clean:
	rm -rf bin
