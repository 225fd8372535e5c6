# romflow: every target does its own set-up, so a fresh machine needs only `make run` or `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
CORES ?= all
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
export PETSC_DIR := /usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real
# Matplotlib without a display.
export MPLBACKEND := Agg

.PHONY: setup run test bench lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

run: setup
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/config.yaml

# Two workers, one test file each at a time (module fixtures such as the SLURM cluster start once); most
# of the suite waits on subprocesses (Snakemake, mpiexec, sbatch), so two workers fit a 2-core machine.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: setup
	$(PY) benchmarks/hifi_solver.py

lint: setup
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results .snakemake
