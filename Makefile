# raftlb — see README.md. Every target installs what it needs.
GO      ?= go
BIN     := bin/raftlb
FUZZTIME ?= 30s

.PHONY: all build demo test unit e2e vet fuzz bench clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/raftlb

# The README's first command: a three-node cluster, a failover, figures.
demo:
	./scripts/demo-local.sh

# The README's second command, and what CI runs: vet, then every test
# (unit, in-process clusters, real agent processes, fuzz seed corpora).
test: vet
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)
	$(GO) test -count=1 ./e2e/...

vet:
	$(GO) vet ./...

# Run each fuzzer for FUZZTIME; findings land in testdata/fuzz and then
# run as ordinary tests.
fuzz:
	$(GO) test ./fsm -run '^$$' -fuzz '^FuzzParseServices$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fsm -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fsm -run '^$$' -fuzz '^FuzzApply$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cmd/raftlb -run '^$$' -fuzz '^FuzzParseConfigFile$$' -fuzztime $(FUZZTIME)

# Kill the DC 20 times on loopback; prints `figure: NAME = VALUE UNIT`.
bench:
	$(GO) test ./e2e -run '^$$' -bench '^BenchmarkFailover$$' -benchtime 1x -timeout 20m

clean:
	rm -rf bin
