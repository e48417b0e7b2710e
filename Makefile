# Two commands set up everything on a fresh machine:
#   make demo   -- end-to-end demo on the embedded default (simulated board + local tail server)
#   make test   -- the whole test suite (what .ci/run calls)
# Both create .venv on first use and reinstall only when pyproject.toml changes.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.splitfit-installed
DATA_STAMP := vendor/.fashion-mnist-ready
PROM_STAMP := vendor/.prometheus-ready
PYTEST_ARGS ?=

.PHONY: demo test test-quick lint data photos venv clean bench

demo: $(STAMP) $(DATA_STAMP)
	$(PY) -m benchmarks.demo

test: $(STAMP) $(DATA_STAMP) $(PROM_STAMP)
	@# pytest exits 5 when it collected nothing; say so instead of failing obscurely.
	@set +e; $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; fi; exit $$rc

test-quick: $(STAMP) $(DATA_STAMP)
	$(PY) -m pytest -m "not slow and not netns" $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

venv: $(STAMP)

data: $(DATA_STAMP)

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "splitfit needs Python >= 3.11 (found %s); set PYTHON=python3.11" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch goes in first, pinned, so pip takes the CPU wheel and never resolves a CUDA build.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# Fashion-MNIST from Debian (real labeled images, nothing downloads at run time).
$(DATA_STAMP): scripts/fetch_fashion_mnist.sh
	bash scripts/fetch_fashion_mnist.sh vendor
	touch $@

# Debian's prometheus for tests/test_server_prometheus.py (a real scraper of the server's
# metrics). Installed when root and missing; never fails the set-up: without root or apt the
# test skips and says why. The stamp is written only once the binary is there, so a later
# `make test` as root tries again.
$(PROM_STAMP):
	@if command -v prometheus >/dev/null 2>&1; then \
		echo "prometheus: $$(command -v prometheus)"; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "prometheus is not installed and this is not root: tests/test_server_prometheus.py will skip (sudo apt-get install prometheus)"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "prometheus is not installed and there is no apt-get: tests/test_server_prometheus.py will skip"; \
	else \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -q prometheus \
		|| { apt-get update -q && apt-get install -y -q prometheus; } \
		|| echo "apt-get could not install prometheus: tests/test_server_prometheus.py will skip"; \
	fi
	@if command -v prometheus >/dev/null 2>&1; then mkdir -p $(@D) && touch $@; fi

# Real photos from 11 Debian packages (~600 MB download) with a per-file licence manifest in
# vendor/photos/manifest.json; not part of demo or test (docs/data.md).
photos: $(STAMP)
	$(PY) scripts/fetch_photos.py --vendor vendor

bench: $(STAMP) $(DATA_STAMP)
	$(VENV)/bin/splitfit-bench --help

clean:
	rm -rf $(VENV) vendor demo-out .pytest_cache
