#!/usr/bin/env bash
# A dolfinx (FEniCSx) environment of its own, for tests/test_dolfinx.py and the walkthrough of
# docs/bring_your_own.md: dolfinx needs Python >= 3.12 (romflow's stack is Debian's 3.11), so it gets an
# interpreter of its own (python3.13/python3.12 on PATH, or pyenv's) and the PyPI wheel
# dolfinx-solver-real (its own PETSc and MPICH). Where that is impossible the reason goes to
# $venv.unavailable and the script still succeeds: the test is then skipped with that reason.
set -uo pipefail
venv=${1:-.venv-dolfinx}
rm -f "$venv.unavailable"
python=""
for cand in python3.13 python3.12 "$HOME"/.pyenv/versions/3.13*/bin/python "$HOME"/.pyenv/versions/3.12*/bin/python; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null; then
        python=$(command -v "$cand"); break
    fi
done
if [ -z "$python" ]; then
    echo "no Python >= 3.12 on PATH or in ~/.pyenv (dolfinx's wheels need one)" > "$venv.unavailable"
    echo "dolfinx-env: $(cat "$venv.unavailable")"; exit 0
fi
if ! { [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"; } \
   || ! "$venv/bin/python" -m pip install -q --disable-pip-version-check dolfinx-solver-real h5py scipy meshio gmsh \
   || ! "$venv/bin/python" -c 'import dolfinx_solver, dolfinx' ; then
    echo "the dolfinx-solver-real wheel did not install or import with $python (see the output above)" > "$venv.unavailable"
    echo "dolfinx-env: $(cat "$venv.unavailable")"; exit 0
fi
echo "dolfinx-env: $("$venv/bin/python" -c 'import dolfinx_solver, dolfinx; print("dolfinx", dolfinx.__version__)') in $venv"
