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

.PHONY: setup run test test-portability bench lint clean dolfinx-env

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

run: setup
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/config.yaml

# Two workers, one test file each at a time (module fixtures such as the SLURM cluster start once); most
# of the suite waits on subprocesses (Snakemake, mpiexec, sbatch), so two workers fit a 2-core machine.
TEST_WORKERS ?= 2
test: setup dolfinx-env
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# dolfinx in an environment of its own (Python >= 3.12, the dolfinx-solver-real wheel), for
# tests/test_dolfinx.py; where it cannot be built, .venv-dolfinx.unavailable says why and the test skips.
DOLFINX_VENV ?= .venv-dolfinx
dolfinx-env: $(DOLFINX_VENV)/.installed
$(DOLFINX_VENV)/.installed: scripts/dolfinx_env.sh
	bash scripts/dolfinx_env.sh $(DOLFINX_VENV)
	@if [ -x $(DOLFINX_VENV)/bin/python ] && [ ! -f $(DOLFINX_VENV).unavailable ]; then touch $@; fi

# The numerical test files (no Snakemake, SLURM or streaming run) again under other thread counts and
# torch's generic kernels: other summation orders, as on another CPU, fail here rather than on a
# user's machine (tests/README.md).
NUMERICAL_TESTS := $(addsuffix .py,$(addprefix tests/test_,adaptive clustering declared deim eim eim_bound \
	eim_estimator elasticity fem gp heat mmgp nonlinear_heat output_bounds parabolic_rb pod rb rb_rigor rb_riesz scm uq api \
	ecm viscoplastic viscoplastic_law))
test-portability: setup
	OMP_NUM_THREADS=1 ATEN_CPU_CAPABILITY=default $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(NUMERICAL_TESTS)
	OMP_NUM_THREADS=3 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(NUMERICAL_TESTS)

bench: setup
	$(PY) benchmarks/hifi_solver.py

# Every check runs and the target fails if any failed: ruff (pyproject.toml's [tool.ruff]; no fixes
# applied), snakefmt --check on the Snakefile and rule files, Snakemake's own linter.
lint: setup
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/snakefmt --check Snakefile workflow/rules/ || status=1; \
	$(VENV)/bin/snakemake --lint || status=1; \
	exit $$status

clean:
	rm -rf results .snakemake
