"""gather + POD of a large snapshot set: peak resident memory and time, before (every chunk loaded, the
merged set and the POD in memory) and after (rom.snapshots.gather_files streams the chunks into the
merged file; rom.reduction.pod.pod_blocks reads it in panels of samples).

A synthetic set: smooth fields on a grid of `--dofs` nodes (a sum of sines with decaying random
amplitudes, and a little noise), `--samples` train samples in chunk files of `--chunk-size`, a test set of
`--test-samples`; X the 5-point Laplacian (plus a mass term). Every phase runs in a fresh process
and reports its peak RSS (ru_maxrss) above the RSS after its imports. The results of both paths are
compared (eigenvalues, modes up to sign, test projection errors).

    .venv/bin/python benchmarks/pod_scale.py                      # small (< 1 min)
    .venv/bin/python benchmarks/pod_scale.py --dofs 200000 --samples 300 --block-mb 256

Last line: one JSON object."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from _phases import drive, parser, write_sets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    """Peak RSS of this process (VmHWM: ru_maxrss on Linux keeps the parent's peak across fork + exec)."""
    from rom.memory import peak_rss_mb

    return peak_rss_mb()


def laplacian(n: int):
    import numpy as np
    import scipy.sparse as sp

    k = int(round(np.sqrt(n)))
    rows = -(-n // k)
    T = sp.diags([-np.ones(k - 1), 2 * np.ones(k), -np.ones(k - 1)], [-1, 0, 1])
    R = sp.diags([-np.ones(rows - 1), 2 * np.ones(rows), -np.ones(rows - 1)], [-1, 0, 1])
    A = (sp.kron(sp.eye(rows), T) + sp.kron(R, sp.eye(k)) + 1e-2 * sp.eye(rows * k)).tocsr()
    return A[:n, :n].tocsr()


def make(folder: Path, n: int, m: int, m_test: int, chunk: int, seed: int = 0):
    import numpy as np
    import scipy.sparse as sp

    sp.save_npz(folder / "X.npz", laplacian(n))
    x = np.linspace(0.0, 1.0, n)
    rng = np.random.default_rng(seed)
    modes = 30
    freqs = np.arange(1, modes + 1)
    basis = np.sin(np.pi * np.outer(freqs, x))

    def fields(idx):
        amp = rng.standard_normal((len(idx), modes)) * 0.7 ** freqs
        U = amp @ basis + 1e-9 * rng.standard_normal((len(idx), n))
        return rng.uniform(size=(len(idx), 2)), U

    write_sets(folder, m, m_test, chunk, fields)


def phase(which: str, folder: Path, tol: float, max_modes: int, block_mb: float) -> dict:
    import numpy as np
    import scipy.sparse as sp

    from rom import artefacts
    from rom.reduction import pod as podmod
    from rom.reduction.pod_study import pod_study
    from rom.snapshots import SnapshotRows, gather_files, snapshot_rows
    from rom.snapshots import gather as merge

    base = rss_mb()
    t0 = time.perf_counter()
    out = {}
    if which.endswith("gather"):
        for name in ("train", "test"):
            chunks = sorted((folder / name).glob("chunk*.h5"))
            target = folder / f"{which}_{name}.h5"
            if which == "old_gather":  # the code before: every chunk loaded, merged in memory
                artefacts.write(merge([artefacts.read(p) for p in chunks]), target, None, "snapshots")
            else:
                ds, fill = gather_files(chunks)
                artefacts.write(ds, target, None, "snapshots", fill=fill)
    else:
        X = sp.load_npz(folder / "X.npz").tocsr()
        src = "old_gather" if which == "old_pod" else "new_gather"
        if which == "old_pod":  # the code before: both sets loaded, the POD in memory
            S = snapshot_rows(artefacts.read(folder / f"{src}_train.h5"))
            T = snapshot_rows(artefacts.read(folder / f"{src}_test.h5"))
            ds = pod_study(S, T, X, tol, max_modes)
        else:
            S, T = SnapshotRows(folder / f"{src}_train.h5"), SnapshotRows(folder / f"{src}_test.h5")
            ds = pod_study(S, T, X, tol, max_modes, int(block_mb * 2 ** 20))
            out["panel_mb"] = podmod._steps(S, int(block_mb * 2 ** 20))[0] * S.n_dofs * 8 / 2 ** 20
        out["x_mb"] = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2 ** 20
        out["modes_mb"] = ds["modes"].values.nbytes / 2 ** 20
        np.savez(folder / f"{which}.npz", modes=ds["modes"].values, lam=ds["eigenvalues"].values,
                 err=ds["test_error"].values)
    out.update(seconds=time.perf_counter() - t0, base_mb=base, peak_mb=rss_mb())
    out["extra_mb"] = out["peak_mb"] - base
    return out


def main(argv=None):
    args = parser(__doc__, 20, "panel of the blocked POD (MB)", 40, tol=1e-14).parse_args(argv)

    def show(which, r, matrix_mb):
        print(f"{which:11s} {r['seconds']:7.2f} s  peak RSS {r['peak_mb']:8.1f} MB, {r['extra_mb']:8.1f} MB above "
              f"imports = {r['extra_mb'] / matrix_mb:5.2f} x the train matrix ({matrix_mb:.1f} MB)")

    def report(folder, res, matrix_mb):
        import numpy as np

        old, new = np.load(folder / "old_pod.npz"), np.load(folder / "new_pod.npz")
        lam_err = float(np.abs(old["lam"] - new["lam"]).max() / old["lam"][0])
        k = min(len(old["modes"]), len(new["modes"]))
        sign = np.sign(np.einsum("ij,ij->i", old["modes"][:k], new["modes"][:k]))
        mode_err = np.abs(old["modes"][:k] - sign[:, None] * new["modes"][:k]).max(axis=1)
        err_diff = float(np.abs(old["err"] - new["err"]).max()) if old["err"].shape == new["err"].shape else float("inf")
        budget = res["new_pod"]["panel_mb"] + res["new_pod"]["modes_mb"] + res["new_pod"]["x_mb"]
        print(f"eigenvalues: max |diff| / lambda_1 = {lam_err:.1e}; modes {len(old['modes'])} vs {len(new['modes'])}, "
              f"max |diff| up to sign: first 10 {mode_err[:10].max():.1e}, all {mode_err.max():.1e}; "
              f"test errors max |diff| {err_diff:.1e}")
        print(f"new POD: {res['new_pod']['extra_mb']:.1f} MB above imports = "
              f"{res['new_pod']['extra_mb'] / budget:.2f} x (panel {res['new_pod']['panel_mb']:.1f} + modes "
              f"{res['new_pod']['modes_mb']:.1f} + X {res['new_pod']['x_mb']:.1f} MB)")
        print(f"ratios old/new: gather memory {res['old_gather']['extra_mb'] / max(res['new_gather']['extra_mb'], 1):.1f} x, "
              f"time {res['old_gather']['seconds'] / res['new_gather']['seconds']:.2f} x; POD memory "
              f"{res['old_pod']['extra_mb'] / max(res['new_pod']['extra_mb'], 1):.1f} x, time "
              f"{res['old_pod']['seconds'] / res['new_pod']['seconds']:.2f} x")
        return {"dofs": args.dofs, "samples": args.samples, "test_samples": args.test_samples,
                "block_mb": args.block_mb, "matrix_mb": round(matrix_mb, 1),
                **{f"{w}_{k}": round(v, 2) for w, r in res.items() for k, v in r.items()},
                "new_pod_over_budget": round(res["new_pod"]["extra_mb"] / budget, 3),
                "eigenvalue_error": lam_err, "mode_error_first10": float(mode_err[:10].max()),
                "test_error_diff": err_diff}

    return drive(args, __file__, make, lambda which, folder: phase(which, folder, args.tol, args.max_modes, args.block_mb),
                 ("old_gather", "new_gather", "old_pod", "new_pod"), show, report)


if __name__ == "__main__":
    sys.exit(main())
