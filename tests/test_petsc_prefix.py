"""PETSc options are per solver (rom.hifi.solvers.petsc): each solver reads them under its own prefix, so two
solvers of one process never see each other's options, and the process-wide database keeps the
command line's alone."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from conftest import ROOT, env
from rom.hifi.solvers import petsc


def laplacian_pattern(n: int):
    """CSR pattern (indptr, indices) and values of the 1D Laplacian: SPD, so CG and GMRES both solve it."""
    indptr, indices, values = [0], [], []
    for i in range(n):
        cols = [j for j in (i - 1, i, i + 1) if 0 <= j < n]
        indices += cols
        values += [2.0 if j == i else -1.0 for j in cols]
        indptr.append(len(indices))
    return np.array(indptr), np.array(indices), np.array(values)


def solver(options, n: int = 20):
    PETSc = petsc.init()
    indptr, indices, values = laplacian_pattern(n)
    s = petsc.LinearSolver(PETSc.COMM_SELF, n, 0, n, indptr, indices, options)
    s.set_values(values)
    return s


def test_two_solvers_of_one_process_keep_their_own_options():
    PETSc = petsc.init()
    before = PETSc.Options().getAll()
    cg = solver({"ksp_type": "cg", "pc_type": "jacobi", "ksp_rtol": 1e-9})
    gmres = solver({"ksp_type": "gmres", "pc_type": "none"})
    plain = solver(None)  # PETSc's own defaults: nothing of the two before it
    assert (cg.ksp.getType(), cg.pc_type(), cg.ksp.getTolerances()[0]) == ("cg", "jacobi", 1e-9)
    assert (gmres.ksp.getType(), gmres.pc_type()) == ("gmres", "none")
    assert plain.ksp.getType() == "gmres" and plain.pc_type() not in ("jacobi", "none")
    assert plain.ksp.getTolerances()[0] != 1e-9
    for s in (cg, gmres, plain):
        x, info = s.solve(np.ones(20))
        assert info.converged, info.reason
    # The config options never reach the process-wide database, and leave with their solvers.
    assert not {"ksp_type", "pc_type", "ksp_rtol"} & set(PETSc.Options().getAll())
    for s in (cg, gmres, plain):
        s.destroy()
    assert PETSc.Options().getAll() == before


SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from rom.hifi.solvers import petsc
PETSc = petsc.init(["-ksp_max_it", "7"])
sys.path.insert(0, sys.argv[2])
from test_petsc_prefix import solver
a = solver({"ksp_type": "cg", "ksp_max_it": 100, "pc_type": "jacobi", "pc_gamg_threshold": 0.01})
b = solver({"ksp_type": "gmres", "pc_type": "gamg", "pc_gamg_threshold": 0.01})
print(json.dumps({"a": [a.ksp.getType(), a.pc_type(), a.ksp.getTolerances()[3], a.unused_options()],
                  "b": [b.ksp.getType(), b.pc_type(), b.ksp.getTolerances()[3], b.unused_options()],
                  "global": sorted(k for k in PETSc.Options().getAll() if not k.startswith(petsc.PREFIX))}))
"""


def test_the_command_line_wins_in_every_solver_and_unused_options_are_per_solver(tmp_path):
    """In a fresh process whose command line says -ksp_max_it 7: every solver takes it, over its config
    too; an option that one solver read (GAMG's threshold) is still unused for the other (Jacobi)."""
    script = tmp_path / "two_solvers.py"
    script.write_text(SCRIPT)
    proc = subprocess.run([sys.executable, script, ROOT, ROOT / "tests"], env=env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["a"] == ["cg", "jacobi", 7, ["pc_gamg_threshold"]]
    assert out["b"] == ["gmres", "gamg", 7, []]
    assert out["global"] == ["ksp_max_it"]  # the process-wide database: the command line alone
