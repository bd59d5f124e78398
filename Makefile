# `make repro`: set up and run the pipeline.  `make test`: set up and run the test suite.
# `make check`: the fast tier of the tests, those that start no process (tests/conftest.py).
# `make bench`: the speed / memory benchmark (full-size Fashion-MNIST; see README).
# `make mutate`: mutation testing of the statistics and metrics code (docs/mutation.md).
# `make repro JOBS=N`: trainings on N local Dask workers (default: every core; JOBS=1: one after another).
# `make restore`: back to the committed run after any experiment (outputs from DVC's caches).
# `make sweep [SWEEP=path] [SHARD=k/N]`: one experiment per grid point (docs/scale-out.md).
# `make sweep CLUSTER=tcp://HOST:8786`, `make repro CLUSTER=…`: the same on a Dask cluster (docs/scale-out.md).
# `make sweep-report`: fetch every experiment of the sweep from the remotes and draw the map.
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-requirements
# On PATH so that dvc's `python -m stages.…` commands run in the venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)

JOBS ?=
SWEEP ?= sweep.yaml
SHARD ?=
CLUSTER ?=

.PHONY: setup repro restore sweep sweep-report check test bench mutate clean

setup: $(STAMP)

$(STAMP): requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	cp requirements.txt $@

repro: setup
	$(BIN)/python -m classweights.params
	$(BIN)/python -m orchestration.scaleout repro --jobs '$(JOBS)' --cluster '$(CLUSTER)'

restore: setup
	$(BIN)/python -m orchestration.scaleout restore

sweep: setup
	$(BIN)/python -m orchestration.scaleout sweep '$(SWEEP)' --jobs '$(JOBS)' --shard '$(SHARD)' --cluster '$(CLUSTER)'

sweep-report: setup
	$(BIN)/python -m orchestration.sweep '$(SWEEP)' --pull

# The tests not marked slow (tests/conftest.py marks those that start DVC, make, Dask or a stage
# process): in-process TensorFlow and statistics, one pytest worker per core, a file's tests on one,
# the files slowest first in conftest's order.
check: setup
	$(BIN)/python -m pytest -m "not slow" -n $$(nproc) --dist loadfile --no-loadscope-reorder

# One pytest worker per core and one more (tests/conftest.py). A test file's tests stay on one
# worker, so its module fixtures (a shared origin, a cluster) are built once; the files go out
# slowest first, in conftest's order. The 15 slowest tests are listed last.
test: setup
	$(BIN)/python -m pytest -n auto --dist loadfile --no-loadscope-reorder --durations=15

bench: setup
	$(BIN)/python -m bench.benchmark
	$(BIN)/python -m bench.throughput
	$(BIN)/python -m bench.resnet
	$(BIN)/python -m bench.frozen

# A fresh run each time (settings in setup.cfg: the four files, the fast unit tests only).
mutate: setup
	rm -rf mutants
	$(BIN)/mutmut run
	$(BIN)/mutmut export-cicd-stats
	@echo "surviving mutants (mutmut show NAME for the diff):"
	@$(BIN)/mutmut results
	@$(BIN)/python -c "import json; s = json.load(open('mutants/mutmut-cicd-stats.json')); \
	print(f\"mutation score: {s['killed']} of {s['total']} mutants killed = {s['killed'] / s['total']:.1%} \
	({s['survived']} survived, {s['timeout']} timed out, {s['no_tests']} not covered)\")"

clean:
	rm -rf $(VENV)
