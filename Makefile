# Two entry points: `make demo` (the main job) and `make test` (the suite).
# Both create .venv with python3 on first use and reinstall only when a lock file changes;
# the demo installs requirements.lock, the tests requirements-dev.lock (adds pytest, torch).
# The locks pin exact versions; `make lock` refreshes them from the ranges in requirements*.txt.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.installed-runtime
DEV := $(VENV)/.installed
DEMO_ROOT ?= data/synthetic-demo
DEMO_RUN ?= runs/demo

.PHONY: demo test install lock smoke smoke-night bench suite-smoke clean-demo

install: $(DEV)

$(RUNTIME): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $$(grep -E '^(pip|setuptools)==' requirements.lock)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	touch $(RUNTIME)

$(DEV): $(RUNTIME) requirements-dev.lock
	$(PY) -m pip install -q -r requirements-dev.lock
	touch $(DEV)

# pytest exits 5 when it collects no test: report it, do not fail on it. The suite runs in
# TEST_WORKERS processes (pytest-xdist), a test file per process at a time.
TEST_WORKERS ?= 2
test: $(DEV)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests; code=$$?; \
	if [ $$code -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$code

# Exact versions from the ranges, resolved in fresh virtual environments (scripts/lock.sh).
lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

demo: $(RUNTIME)
	$(PY) scripts/demo.py --root $(DEMO_ROOT) --workdir $(DEMO_RUN)

smoke: $(RUNTIME)
	$(PY) -m vgjax.synthetic --out data/synthetic-tiny --preset tiny
	$(PY) -m vgjax.train --config configs/smoke.py --workdir runs/smoke

smoke-night: $(RUNTIME)
	test -d data/synthetic-tiny/night-target || $(PY) -m vgjax.synthetic --out data/synthetic-tiny --preset tiny --overwrite
	$(PY) -m vgjax.train --config configs/smoke_night.py --workdir runs/smoke_night

suite-smoke: $(RUNTIME)
	$(PY) scripts/run_suite.py --suite configs/suites/table1_baselines.py:city --smoke --repeats 1 --out runs/suite-smoke

bench: $(RUNTIME)
	$(PY) scripts/bench.py --smoke

clean-demo:
	rm -rf $(DEMO_ROOT) $(DEMO_RUN)
