# Quick start: `make demo` and `make test`. Both set up what they need.

CARGO ?= cargo
PYTHON ?= python3

.PHONY: all build setup demo test test-rust test-py lint bench clean

all: build

build:
	$(CARGO) build --release --workspace

# Test dependencies that are not on a fresh machine of this kind.
setup:
	@bash scripts/setup.sh

demo: build
	@bash scripts/demo.sh

test: setup lint build
	$(CARGO) test --release --workspace
	$(PYTHON) -m pytest -q tests

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --release -- -D warnings

# Peers (fuse-overlayfs, mergerfs, proot, fakechroot) are installed by the
# script when missing; matplotlib draws the chart.
bench: build
	@$(PYTHON) -c 'import matplotlib' 2>/dev/null || $(PYTHON) -m pip install --quiet matplotlib
	$(PYTHON) bench/run.py

clean:
	$(CARGO) clean
	rm -rf bench/out demo
