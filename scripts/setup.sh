#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine: Debian's PETSc/MPI stack, a virtual environment that
# sees it, the project with its test extras, and PyTorch's CPU build where no NVIDIA GPU is present.
set -euo pipefail
venv=${1:-.venv}
petsc_dir=/usr/lib/petscdir/petsc3.18/x86_64-linux-gnu-real

need_apt=()
for pkg in python3-petsc4py-real python3-mpi4py openmpi-bin python3-venv; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
    # Debian's interpreter: petsc4py and mpi4py are built for it, and --system-site-packages lets the venv see them.
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Debian's petsc4py looks for PETSc under /usr/lib/petsc unless PETSC_DIR is set; set it for every process of the venv.
echo "import os; os.environ.setdefault('PETSC_DIR', '$petsc_dir')" > "$site/romflow_petsc_dir.pth"

pip=("$venv/bin/python" -m pip install -q --disable-pip-version-check)
if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        "${pip[@]}" torch
    else
        # CPU build: the default wheel pulls several GB of CUDA libraries a machine without a GPU never uses.
        "${pip[@]}" "torch==2.13.0" || "${pip[@]}" torch --index-url https://download.pytorch.org/whl/cpu
    fi
fi
"${pip[@]}" -e ".[test]"
"$venv/bin/python" -c 'import petsc4py, mpi4py, torch, h5netcdf, snakemake; from petsc4py import PETSc; print("setup: PETSc", ".".join(map(str, PETSc.Sys.getVersion())), "| torch", torch.__version__)'
