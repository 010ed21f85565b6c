# raftlb — see README.md. Every target installs what it needs.
GO      ?= go
BIN     := bin/raftlb
FUZZTIME ?= 30s

.PHONY: all build demo demo-local test e2e nemesis bench-lab vet fuzz bench mutate clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/raftlb

# The README's first command: boots the kernel lab (qemu, a Debian kernel
# with IPVS), runs three agents with real traffic, pulls the DC's cable.
demo:
	lab/run.sh --exec lab/demo.sh

# The control plane alone on loopback, without the VM.
demo-local:
	./scripts/demo-local.sh

# The README's second command, and what CI runs: vet, every Go test (unit,
# in-process clusters, real agent processes, fuzz seed corpora), then the
# kernel-lab scenarios.
test: vet
	./scripts/test-prereqs.sh
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)
	$(GO) test -count=1 ./e2e/...
	lab/run.sh -test.v

# The kernel-lab scenarios alone (LVS-DR on a real kernel, in qemu).
e2e:
	lab/run.sh -test.v

# The nemesis suite alone, RUNS injections of each fault class (CI runs
# one of each within make test) under TAKEOVER (lease or immediate);
# prints `figure:` lines per class.
RUNS ?= 5
TAKEOVER ?= lease
nemesis:
	LAB_TIMEOUT=$${LAB_TIMEOUT:-60m} lab/run.sh -test.v -test.run '^TestNemesis$$' -lab.nemesis-runs=$(RUNS) -lab.nemesis-takeover=$(TAKEOVER)

# The failover figures with more runs than CI's, raftlb and keepalived side
# by side in one VM run (cable pull, killed, frozen and stopped DC, a dead
# real server, held connections through a cable pull and a planned move;
# the run ends with their table and ratios), and ten idle minutes watched
# for DC changes; then ten more with every CPU of the VM kept busy. RUNS
# repetitions each (the nemesis classes once: make nemesis for more).
bench-lab:
	LAB_TIMEOUT=$${LAB_TIMEOUT:-75m} lab/run.sh -test.v -test.run '^(TestKeepalived.*|TestHealthBlackholedServerLeaves|TestRaftlbCablePull|TestRaftlbGracefulStop|TestRaftlbConnectionsSurvive|TestNemesis|TestRaftlbIdle)$$' -lab.runs=$(RUNS) -lab.idle=10m
	LAB_TIMEOUT=$${LAB_TIMEOUT:-20m} lab/run.sh -test.v -test.run '^TestRaftlbIdle$$' -lab.idle=10m -lab.hog

vet:
	$(GO) vet ./...
	$(GO) vet -tags lab ./lab/...

# Run each fuzzer for FUZZTIME; findings land in testdata/fuzz and then
# run as ordinary tests.
fuzz:
	$(GO) test ./spec -run '^$$' -fuzz '^FuzzParseServices$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fsm -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fsm -run '^$$' -fuzz '^FuzzApply$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cmd/raftlb -run '^$$' -fuzz '^FuzzParseConfigFile$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dataplane -run '^$$' -fuzz '^FuzzARPSender$$' -fuzztime $(FUZZTIME)
	$(GO) test ./fsm -run '^$$' -fuzz '^FuzzReadSnapshot$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cluster -run '^$$' -fuzz '^FuzzDecodeMeta$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cluster -run '^$$' -fuzz '^FuzzDecodeRPCRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cluster -run '^$$' -fuzz '^FuzzParsePeers$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cluster -run '^$$' -fuzz '^FuzzRaftHeaderCheck$$' -fuzztime $(FUZZTIME)
	$(GO) test ./realserver -run '^$$' -fuzz '^FuzzParseStateFile$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dataplane -run '^$$' -fuzz '^FuzzParseSyncDaemon$$' -fuzztime $(FUZZTIME)
	$(GO) test ./dataplane -run '^$$' -fuzz '^FuzzParseConns$$' -fuzztime $(FUZZTIME)
	$(GO) test ./resources -run '^$$' -fuzz '^FuzzStateFile$$' -fuzztime $(FUZZTIME)

# Kill the DC 20 times on loopback, then watch the idle cluster for 20 s
# while every CPU is kept busy; prints `figure: NAME = VALUE UNIT`.
bench:
	$(GO) test ./e2e -run '^$$' -bench '^(BenchmarkFailover|BenchmarkIdleUnderLoad)$$' -benchtime 1x -timeout 20m

# Break the code on purpose, one mutation of mutations.yaml at a time, and
# print which breakages no test notices. Not part of `make test`.
mutate:
	$(GO) run ./scripts/mutate

clean:
	rm -rf bin
