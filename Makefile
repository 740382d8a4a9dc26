# Two commands for a newcomer: `make run` trains and prints results, `make test` passes the
# tests. Both create .venv on first use and install what they need into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test bench env-bench venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,plot]"
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m jaxq train --env FrozenLake8x8-v1 --out runs/frozenlake8x8

test: $(STAMP)
	$(PY) -m pytest -q
	JAXQ_MULTIDEVICE=1 $(PY) -m pytest -q tests/multidevice

bench: $(STAMP)
	$(PY) experiments/run.py all

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
