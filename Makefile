# Quick start: `make demo` and `make test`. Both set up what they need.

CARGO ?= cargo
PYTHON ?= python3

.PHONY: all build setup demo test test-rust test-py lint typecheck wheel bench clean

all: build

build:
	$(CARGO) build --release --workspace

# Test dependencies that are not on a fresh machine of this kind.
setup:
	@bash scripts/setup.sh

demo: build
	@bash scripts/demo.sh

TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)

test: setup lint build typecheck wheel
	$(CARGO) test --release --workspace
	USVFS_WHEEL="$$(ls dist/usvfs-*.whl)" $(PYTHON) -m pytest -q tests

# The Python package's stubs match what it exports at runtime (checked
# against the extension module the workspace build made, as the tests use it).
typecheck: build
	@[ -e python/usvfs/_native.abi3.so ] || ln -s $(abspath $(TARGET_DIR))/release/lib_native.so python/usvfs/_native.abi3.so
	cd python && $(PYTHON) -m mypy.stubtest usvfs --mypy-config-file /dev/null
	cd python && $(PYTHON) -m mypy --strict --cache-dir=/dev/null usvfs
	@if command -v pyright >/dev/null; then \
	    out=$$(PYTHONPATH=$(CURDIR)/python pyright --verifytypes usvfs --ignoreexternal); status=$$?; \
	    echo "$$out" | grep -E "error|completeness score"; exit $$status; \
	else echo "pyright not installed: skipping pyright --verifytypes"; fi

# The wheel (dist/usvfs-*-cp39-abi3-manylinux_2_34_x86_64.whl): the
# extension module, plus the preload library and the `usvfs` command the
# workspace build made, without debug info. tests/python/test_wheel.py
# installs it into a fresh venv and runs the README's examples from it.
wheel: build
	rm -rf dist
	USVFS_BUNDLE_FROM=$(abspath $(TARGET_DIR))/release $(PYTHON) -m maturin build --release --quiet -o dist

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
	rm -rf bench/out demo dist python/usvfs/_bin
