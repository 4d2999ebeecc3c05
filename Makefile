# Two commands set everything up on a fresh machine:
#   make demo   -> creates .venv, installs, labels real clips, trains the tiny preset, writes pictures to demo_out/
#   make test   -> creates .venv, installs, runs the default test suite (slow tests excluded)
# `make test-slow` runs the tests marked slow (real backbone sizes, longer training).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYPROJECTS := pyproject.toml packages/arfm-core/pyproject.toml packages/track-encoder/pyproject.toml

.PHONY: install demo test test-slow bench clean

install: $(STAMP)

$(STAMP): $(PYPROJECTS)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the CPU-capable build that installs quickly on this machine.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	# sam2 ships only an sdist whose build wants torch; build it against the torch above,
	# without the optional CUDA extension (it is only used for mask post-processing).
	SAM2_BUILD_CUDA=0 $(BIN)/pip install -q --no-build-isolation sam2==1.1.0
	$(BIN)/pip install -q -e 'packages/arfm-core[chronos]' -e packages/track-encoder -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python -m arfm.demo --out demo_out

test: install
	$(BIN)/python -m pytest -q -n 2 --timeout 900

test-slow: install
	$(BIN)/python -m pytest -q -m slow --timeout 3600

bench: install
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo_out runs
