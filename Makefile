# `make repro`: set up and run the pipeline.  `make test`: set up and run the test suite.
# `make bench`: the speed / memory benchmark (full-size Fashion-MNIST; see README).
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-requirements
# On PATH so that dvc's `python -m stages.…` commands run in the venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup repro test bench clean

setup: $(STAMP)

$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	cp requirements.txt $@

repro: setup
	$(BIN)/python -m classweights.params
	$(BIN)/dvc repro

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench.benchmark

clean:
	rm -rf $(VENV)
