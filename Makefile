# Two entry points on a fresh machine: `make demo` and `make test`. Each creates .venv and installs
# the package with its pinned torch when needed (torch 2.14.1 and torchvision 0.29.1, see constraints.txt).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rramfx-installed
PYTEST_ARGS ?=

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

# The whole suite, the public model list included (about 5 minutes on 2 cores).
test: $(STAMP) lint
	$(PY) -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

# Everything but the tests marked slow.
test-fast: $(STAMP) lint
	$(PY) -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) benchmarks/dropconnect_step.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
