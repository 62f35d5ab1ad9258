# Two entry points on a fresh machine: `make demo` and `make test`. Each creates .venv and installs
# the package with its pinned torch when needed (torch 2.14.1 and torchvision 0.29.1, see constraints.txt).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rramfx-installed
PYTEST_ARGS ?=

.PHONY: demo data test test-fast test-all lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP) data
	$(PY) examples/demo.py

# The suite CI runs: everything but the exhaustive checks, the public model list included.
test: $(STAMP) lint
	$(PY) -m pytest -n 2 --dist loadgroup -m "not exhaustive" $(PYTEST_ARGS)

# Everything but the tests marked slow or exhaustive.
test-fast: $(STAMP) lint
	$(PY) -m pytest -n 2 -m "not slow and not exhaustive" $(PYTEST_ARGS)

# Everything, ONNX export of all 40 public models included (about 25 minutes on 2 cores).
test-all: $(STAMP) lint
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/dropconnect_step.py
	$(PY) benchmarks/monte_carlo.py
	$(PY) benchmarks/ort_vs_torch.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

# The demo's data: Debian's dataset-fashion-mnist, installed with apt when it is missing and apt can be
# used (as root, or with password-less sudo); otherwise the demo prints what to install.
FASHION_MNIST := /usr/share/datasets/fashion-mnist
data:
	@if [ -f $(FASHION_MNIST)/t10k-images-idx3-ubyte.gz ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
	  echo "Fashion-MNIST not found in $(FASHION_MNIST) and there is no apt-get: see examples/demo.py"; \
	else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ]; then \
	    echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist', then 'make demo'"; \
	  else \
	    echo "installing dataset-fashion-mnist with apt-get"; \
	    $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	      { $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q dataset-fashion-mnist; } || \
	      echo "apt-get could not install dataset-fashion-mnist"; \
	  fi; \
	fi
