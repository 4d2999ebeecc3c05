# Two commands set everything up on a fresh machine:
#   make demo   -> creates .venv, installs, draws ARFM predictions vs truth on unseen simulator episodes and real clips (demo_out/)
#   make test   -> creates .venv, installs, runs the default test suite (slow tests excluded)
# `make test-slow` runs the tests marked slow (real backbone sizes, longer training).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYPROJECTS := pyproject.toml packages/arfm-core/pyproject.toml packages/track-encoder/pyproject.toml constraints.txt
# Exact pins for the two README commands; the packages themselves only declare ranges.
PIP := $(BIN)/pip install -q -c constraints.txt

.PHONY: install demo test test-slow bench clean

install: $(STAMP)

$(STAMP): $(PYPROJECTS)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU-capable build that installs quickly on this machine.
	$(PIP) torch torchvision
	# sam2 ships only an sdist whose build wants torch; build it against the torch above,
	# without the optional CUDA extension (it is only used for mask post-processing).
	SAM2_BUILD_CUDA=0 $(PIP) --no-build-isolation sam2
	$(PIP) -e 'packages/arfm-core[chronos]' -e packages/track-encoder -e '.[dev]'
	touch $(STAMP)

# Unseen simulator episodes + held-out real clips with the committed sim-trained tiny ARFM
# (checkpoints/tiny-sim); `make demo DEMO_ARGS=--train` rebuilds that checkpoint first.
demo: install
	OMP_NUM_THREADS=1 $(BIN)/python experiments/demo.py --out demo_out $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest -q -n 2 --timeout 900

test-slow: install
	$(BIN)/python -m pytest -q -m slow --timeout 3600

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_out runs
