# Two commands for a newcomer: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

# torch is pinned and installed first: its CPU build lies on this machine's disk, and letting pip
# resolve `torch>=2.4` on its own could pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job: a DCGAN on the embedded MNIST; ends with a sample grid, FID/KID and the run folder.
demo: $(STAMP)
	$(PY) -m ganforge train mnist-dcgan --out runs/demo-mnist-$$(date +%Y%m%d-%H%M%S)

test: $(STAMP)
	$(PY) -m ruff check ganforge tests benchmarks
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) benchmarks/bench_loop.py
	$(PY) benchmarks/bench_loop.py --fast

clean:
	rm -rf runs .pytest_cache .ruff_cache
