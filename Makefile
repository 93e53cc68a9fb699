CARGO ?= cargo
CONFIG ?= livego.toml

.PHONY: run build test deps fmt fmt-check clippy bench loadtest compare

## run: build the release binary and start the server with livego.toml
run: build
	./target/release/livego --config_file $(CONFIG)

build:
	$(CARGO) build --release

## test: install test programs (ffmpeg, rtmpdump) if missing, check format and lints, run all tests
test: deps fmt-check clippy
	$(CARGO) test --workspace --no-fail-fast

deps:
	./scripts/install-test-deps.sh

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench:
	$(CARGO) bench

## loadtest: release server + native publisher + PLAYERS native RTMP players (short fan-out)
## compare: the same scenario against livego-rs, nginx-rtmp (and LIVEGO=path), with ratios
## Knobs: PLAYERS=100[,1000] DURATION=20 KBIT=600 SCENARIO=fanout|ingest|mixed|ramp PROTO=rtmp|httpflv
##        REPEAT=1 (N > 1: N interleaved rounds of every server and count, medians reported)
PLAYERS ?= 100
DURATION ?= 20
REPEAT ?= 1
export PLAYERS DURATION KBIT SCENARIO PROTO THREADS LIVEGO REPEAT
loadtest: build deps
	$(CARGO) build --release -p loadtest
	./scripts/loadtest.sh loadtest

compare: build deps
	$(CARGO) build --release -p loadtest
	./scripts/loadtest.sh compare
