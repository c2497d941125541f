# Two commands for a newcomer: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean browser docs

setup: $(STAMP)

# torch is pinned and installed first: its CPU build lies on this machine's disk, and letting pip
# resolve `torch>=2.4` on its own could pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job: a DCGAN on the embedded MNIST; ends with a sample grid, FID/KID, the run folder and
# its report page (one self-contained HTML file: samples over training, curves, metrics, config).
# FID once, at the end, and a sample grid every 500 steps: the training itself is the preset's, unchanged.
demo: $(STAMP)
	RUN=runs/demo-mnist-$$(date +%Y%m%d-%H%M%S); \
	$(PY) -m ganforge train mnist-dcgan --set train.eval_every=0 --set train.sample_every=500 --out $$RUN && \
	$(PY) -m ganforge report $$RUN && \
	echo "open $$RUN/report.html in a browser; to run ganforge yourself: source .venv/bin/activate (or .venv/bin/ganforge ...)"

# The browser test's Chromium (Debian's package; playwright's own download needs the network), best
# effort: installed with apt-get when missing and possible (root, or sudo without a password). It
# never fails the build: without it the browser test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null 2>&1 || exit 0; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else exit 0; fi; \
	  echo "installing chromium for the browser test (best effort)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -qq >/dev/null 2>&1 && $$SUDO apt-get install -y -qq chromium >/dev/null 2>&1; } || \
	  echo "chromium could not be installed: the browser test will skip"; }

test: $(STAMP) browser
	$(PY) -m ruff check ganforge tests benchmarks docs/hooks.py
	d=$$(mktemp -d); NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --quiet --site-dir $$d; s=$$?; rm -rf $$d; exit $$s
	$(PY) -m pytest -q -n auto --dist loadgroup --durations=15 tests

# The documentation site (MkDocs): site/index.html; `make test` builds it too, failing on any warning.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) benchmarks/bench_loop.py
	$(PY) benchmarks/bench_loop.py --fast

clean:
	rm -rf runs site .pytest_cache .ruff_cache
