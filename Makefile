# Two commands for a newcomer: `make run` trains and prints results, `make test` passes the
# tests. Both create .venv on first use and install what they need into it.
#
# make test      the library's tests (tests/, 1 device) and the device-parallel strategies
#                (tests/multidevice, 8 forced CPU devices): pytest sessions run side by side
#                (each is mostly single-threaded XLA compiles; a 2-core machine overlaps
#                them). Target: <= 8 minutes on the 2-core CI machine.
# make test-slow the long end-to-end learning runs (tests/slow: every rule and stale
#                strategy to a tight tolerance of Q* after 6M steps; make test checks each
#                at a small size), 1 and 8 devices side by side.
# make test-all  make test, test-slow, then the experiment scripts' smoke runs
#                (tests/experiments: every experiments/*.py --quick in process, its results
#                schema, plots and BENCHMARKS.md section, and the baselines they compare
#                against), about 4 more minutes on 2 cores. CI (.ci/run, 90 minutes) runs
#                test-all.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST := $(PY) -m pytest -q -p no:cacheprovider

.PHONY: run test test-1dev test-8dev test-slow test-experiments test-all bench env-bench venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,plot,tensorboard,ray]"
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m jaxq train --env FrozenLake8x8-v1 --out runs/frozenlake8x8

# The 8-device session and a slice of the 1-device tests (BACKGROUND) run in the
# background (their reports are printed when all are done), so both cores stay busy to
# the end; the rest of the 1-device session reports as it goes. Any failing fails
# `make test`. Balanced by wall time on a quiet 2-core Intel Xeon VM (clean clone,
# 2026-12-02 07:02Z, after this session's deep, tiles and prng tests): the rest took 8:08,
# this slice 7:08 and the 8-device session 7:09 (8:21 with the venv bootstrap); then
# test_deep_resume (~30 s) moved here and the PQN vmap-over-seeds test (~14 s) to
# tests/slow. 2026-12-02 10:03Z the three took 6:36 / 6:54 / 6:58 (8:12 with the
# bootstrap): test_deep_resume and PQN's two longer async tests went to tests/slow.
BACKGROUND := tests/test_discretize.py tests/test_checkpoint.py tests/test_learners.py \
              tests/test_user_errors.py tests/test_textbook.py tests/test_cli.py \
              tests/test_maze.py tests/test_tiles.py
test: $(STAMP)
	@log=$$(mktemp); log2=$$(mktemp); \
	JAXQ_MULTIDEVICE=1 $(PYTEST) tests/multidevice >$$log 2>&1 & multi=$$!; \
	$(PYTEST) $(BACKGROUND) >$$log2 2>&1 & part=$$!; \
	trap 'kill $$multi $$part 2>/dev/null; rm -f $$log $$log2; exit 130' INT TERM; \
	$(PYTEST) $(addprefix --ignore=,$(BACKGROUND)); one=$$?; \
	wait $$part; two=$$?; \
	wait $$multi; eight=$$?; \
	echo "== $(BACKGROUND)"; cat $$log2; \
	echo "== tests/multidevice (8 forced CPU devices)"; cat $$log; rm -f $$log $$log2; \
	test $$one -eq 0 && test $$two -eq 0 && test $$eight -eq 0

# the two sessions of `make test` one after the other (for timing either alone)
test-1dev: $(STAMP)
	$(PYTEST)

test-8dev: $(STAMP)
	JAXQ_MULTIDEVICE=1 $(PYTEST) tests/multidevice

test-experiments: $(STAMP)
	JAXQ_EXPERIMENTS=1 $(PYTEST) tests/experiments

# JAXQ_SLOW=1 like JAXQ_EXPERIMENTS=1 (tests/conftest.py leaves tests/slow out of make test)
test-slow: $(STAMP)
	@log=$$(mktemp); \
	JAXQ_SLOW=1 JAXQ_MULTIDEVICE=1 $(PYTEST) tests/slow/multidevice >$$log 2>&1 & multi=$$!; \
	trap 'kill $$multi 2>/dev/null; rm -f $$log; exit 130' INT TERM; \
	JAXQ_SLOW=1 $(PYTEST) tests/slow; one=$$?; \
	wait $$multi; eight=$$?; \
	echo "== tests/slow/multidevice (8 forced CPU devices)"; cat $$log; rm -f $$log; \
	test $$one -eq 0 && test $$eight -eq 0

test-all: test
	$(MAKE) --no-print-directory test-slow
	$(MAKE) --no-print-directory test-experiments

bench: $(STAMP)
	$(PY) experiments/run.py all

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
