# Two entry points: `make demo` (the main job) and `make test` (the suite).
# Both create .venv with python3 on first use and reinstall only when requirements change.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_ROOT ?= data/synthetic-demo
DEMO_RUN ?= runs/demo

.PHONY: demo test install smoke bench clean-demo

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

# pytest exits 5 when it collects no test: report it, do not fail on it.
test: $(STAMP)
	$(PY) -m pytest -q tests; code=$$?; \
	if [ $$code -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$code

demo: $(STAMP)
	$(PY) scripts/demo.py --root $(DEMO_ROOT) --workdir $(DEMO_RUN)

smoke: $(STAMP)
	$(PY) -m vgjax.data.synthetic --out data/synthetic-tiny --preset tiny
	$(PY) -m vgjax.train --config configs/smoke.py --workdir runs/smoke

bench: $(STAMP)
	$(PY) scripts/bench_pipeline.py

clean-demo:
	rm -rf $(DEMO_ROOT) $(DEMO_RUN)
