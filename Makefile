CARGO ?= cargo
CONFIG ?= livego.toml

.PHONY: run build test deps fmt fmt-check clippy bench loadtest

## run: build the release binary and start the server with livego.toml
run: build
	./target/release/livego --config_file $(CONFIG)

build:
	$(CARGO) build --release

## test: install test programs (ffmpeg, rtmpdump) if missing, check format and lints, run all tests
test: deps fmt-check clippy
	$(CARGO) test --workspace

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

## loadtest: release server + 1 ffmpeg publisher (looped test media) + PLAYERS native RTMP players
PLAYERS ?= 100
DURATION ?= 20
loadtest: build deps
	$(CARGO) build --release -p loadtest
	./scripts/loadtest.sh $(PLAYERS) $(DURATION)
