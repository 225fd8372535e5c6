"""PETSc options checked before any job: the study's `simulate.petsc_options` (and `rb.petsc_options`) are
put into a fresh PETSc options database under a private prefix and tried on a small SPD system with the
solver the problem uses (KSP, or SNES and its KSP), in a subprocess (PETSc and MPI are never initialized
in the Snakemake process). An unknown solver or preconditioner type, or a value PETSc cannot parse, is
refused in one line naming the option and the valid choices; options PETSc never read are reported
(PETSc's own "unused option" check, PetscOptionsUsed). Results are cached per options, solver and PETSc
version in ~/.cache/romflow (ROMFLOW_CACHE overrides).

    python -m rom.hifi.solvers.petsc_options '{"options": {"ksp_type": "cg"}, "solver": "ksp"}'
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PREFIX = "romflowchk_"
# Options whose values name a registered type, and the petsc4py class that lists the types.
TYPE_OPTIONS = {"ksp_type": ("KSP", "Type"), "pc_type": ("PC", "Type"), "snes_type": ("SNES", "Type"),
                "pc_factor_mat_solver_type": ("Mat", "SolverType"), "ksp_norm_type": None}


class OptionError(ValueError):
    """An option PETSc refuses; the message names it and what is expected."""


def _cache_dir() -> Path:
    return Path(os.environ.get("ROMFLOW_CACHE", Path.home() / ".cache" / "romflow"))


def _value(v) -> str:
    return "" if v is True else ("false" if v is False else str(v))


def check(options: dict, solver: str = "ksp", key: str = "simulate.petsc_options") -> list[str]:
    """Raise OptionError for options PETSc refuses; return the names PETSc never used."""
    from rom.paths import atomic_path, digest

    options = {str(k).lstrip("-"): _value(v) for k, v in (options or {}).items()}
    if not options:
        return []
    tag = digest([options, solver, sys.executable])
    cached = _cache_dir() / f"petsc-options-{tag}.json"
    if cached.is_file():
        result = json.loads(cached.read_text())
    else:
        proc = subprocess.run([sys.executable, "-m", "rom.hifi.solvers.petsc_options",
                               json.dumps({"options": options, "solver": solver})],
                              capture_output=True, text=True, timeout=120)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise OptionError(f"{key}: PETSc could not be started to check them ({proc.stderr.strip()[-300:]})")
        result = json.loads(lines[-1])
        if "error" not in result:
            with atomic_path(cached) as tmp:  # concurrent jobs read it: never a half-written file
                tmp.write_text(json.dumps(result))
    if "error" in result:
        raise OptionError(f"{key}.{result['option']} = {result['value']!r}: {result['error']}" if result.get("option")
                          else f"{key}: {result['error']}")
    return result["unused"]


def _types(PETSc, spec) -> list[str]:
    owner, attr = spec
    cls = getattr(getattr(PETSc, owner), attr)
    return sorted({v for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, str)})


def used(names: list[str], prefix: str = PREFIX) -> dict[str, bool]:
    """PetscOptionsUsed for each name (in this process's options database), through the PETSc library
    petsc4py has loaded."""
    import ctypes

    libs = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libpetsc" in line and ".so" in line})
    if not libs:
        return {n: True for n in names}
    lib = ctypes.CDLL(libs[0])
    out = {}
    for n in names:
        flag = ctypes.c_int(0)
        lib.PetscOptionsUsed(None, (prefix + n).encode(), ctypes.byref(flag))
        out[n] = bool(flag.value)
    return out


def _trial(options: dict, solver: str) -> dict:
    import petsc4py

    petsc4py.init([sys.argv[0]])
    from petsc4py import PETSc

    for name, spec in TYPE_OPTIONS.items():
        if name in options and spec is not None:
            valid = _types(PETSc, spec)
            if options[name] not in valid:
                return {"option": name, "value": options[name], "error": f"unknown type; expected one of {valid}"}
    db = PETSc.Options()
    for k, v in options.items():
        db[PREFIX + k] = v
    n = 64  # 1D Laplacian: SPD, big enough for multigrid set-up to read its options
    A = PETSc.Mat().createAIJ((n, n), nnz=3, comm=PETSc.COMM_SELF)
    for i in range(n):
        A.setValue(i, i, 2.0)
        if i:
            A.setValue(i, i - 1, -1.0)
            A.setValue(i - 1, i, -1.0)
    A.assemble()
    b, x = A.createVecs()
    b.set(1.0)
    try:
        if solver == "snes":
            snes = PETSc.SNES().create(PETSc.COMM_SELF)
            snes.setOptionsPrefix(PREFIX)
            r = b.duplicate()
            snes.setFunction(lambda s, X, F: (A.mult(X, F), F.axpy(-1.0, b)), r)
            snes.setJacobian(lambda s, X, J, P: None, A)
            snes.setFromOptions()
            snes.solve(None, x)
        else:
            ksp = PETSc.KSP().create(PETSc.COMM_SELF)
            ksp.setOptionsPrefix(PREFIX)
            ksp.setOperators(A)
            ksp.setFromOptions()
            ksp.setUp()
            ksp.solve(b, x)
    except PETSc.Error as exc:
        said = [line.split("]", 1)[1].strip() for line in str(exc).splitlines()
                if line.startswith("[") and "() at " not in line]
        return {"option": None, "value": None,
                "error": f"PETSc refused these options ({'; '.join(said[:2]) or f'error code {exc.ierr}'}); expected "
                         "values PETSc knows (check the spelling, and that the package a value names is installed)"}
    return {"unused": sorted(k for k, u in used(list(options)).items() if not u)}


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    print(json.dumps(_trial(request["options"], request.get("solver", "ksp"))), flush=True)
