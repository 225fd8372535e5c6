"""The gp and evaluate_gp stages on a large snapshot set: peak resident memory and time, before (both
sets loaded: POD coefficients, the cross-validation of the POD + GP chain with its (n, dofs) error array,
and the test metrics in memory) and after (rom.snapshots.SnapshotRows: every pass reads the snapshots
in blocks of samples, surrogates.gp.BLOCK_BYTES).

The synthetic set of benchmarks/pod_scale.py, parametric (smooth fields, chunk files merged by
rom.snapshots.gather_files as the gather stage merges them; X the 5-point Laplacian); the GP stage's
modes are the blocked POD's. Every phase runs in a fresh process and reports its peak RSS above the RSS
after its imports (numpy, torch, h5py, xarray). The numbers both paths write are compared.

    .venv/bin/python benchmarks/gp_scale.py                               # small (~1 min)
    .venv/bin/python benchmarks/gp_scale.py --dofs 200000 --samples 300 --test-samples 50 --block-mb 256

Last line: one JSON object."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from _phases import drive, parser, write_sets

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SETTINGS = {"parameter_scaling": False, "restarts": 1, "iterations": 60, "gtol": 1e-5, "input_transform": "none",
            "calibration": "cv", "folds": 4, "out_of_range_level": 0.05}


def make(folder: Path, n: int, m: int, m_test: int, chunk: int, seed: int = 0):
    """benchmarks/pod_scale.py's chunk files, the fields smooth functions of the parameters (amplitudes
    cos(k mu_0) mu_1^k on sines of k half-waves, and a little noise) so that the GPs have a function to learn."""
    import numpy as np
    import scipy.sparse as sp
    from pod_scale import laplacian

    sp.save_npz(folder / "X.npz", laplacian(n))
    rng = np.random.default_rng(seed)
    k = np.arange(1, 31)
    basis = np.sin(np.pi * np.outer(k, np.linspace(0.0, 1.0, n)))

    def fields(idx):
        mu = rng.uniform(0.2, 1.0, (len(idx), 2))
        return mu, (np.cos(np.outer(mu[:, 0], k)) * mu[:, 1:] ** k) @ basis + 1e-9 * rng.standard_normal((len(idx), n))

    write_sets(folder, m, m_test, chunk, fields)


def phase(which: str, folder: Path, max_modes: int, block_mb: float) -> dict:
    import numpy as np
    import scipy.sparse as sp
    import torch
    from pod_scale import rss_mb

    from rom import artefacts
    from rom.snapshots import SnapshotRows, gather_files
    from surrogates import gp as gpmod
    from surrogates.pod_gp import fit_study

    torch.set_num_threads(1)
    X = sp.load_npz(folder / "X.npz").tocsr()
    if which == "gather":  # the merged files, as the gather stage writes them
        for name in ("train", "test"):
            ds, fill = gather_files(sorted((folder / name).glob("chunk*.h5")))
            artefacts.write(ds, folder / f"{name}.h5", None, "snapshots", fill=fill)
        return {}
    if which == "pod":  # the stage's modes (blocked POD)
        from rom.reduction.pod import pod_blocks

        V = pod_blocks(SnapshotRows(folder / "train.h5"), X, 1e-14, max_modes, int(block_mb * 2 ** 20))[0]
        np.save(folder / "modes.npy", V)
        return {"modes": len(V)}
    V = np.load(folder / "modes.npy")
    warm = gpmod.fit_pod_gp(np.random.default_rng(0).uniform(size=(8, 2)), np.ones((8, 1)), 0.0, restarts=1,
                            iterations=2)
    gpmod.predict_pod_gp(warm, np.ones((2, 2)), 0.0), warm.loo_novelty(), gpmod.gaussian_factors()
    gpmod.BLOCK_BYTES = int(block_mb * 2 ** 20)
    base = rss_mb()
    t0 = time.perf_counter()

    def sets(name):
        if which == "old_gp":  # the code before: every converged field loaded
            ds = artefacts.converged(artefacts.read(folder / f"{name}.h5"))
            return ds["mu"].values, ds["u"].values
        meta = artefacts.read(folder / f"{name}.h5", drop=("u",))
        return artefacts.converged(meta)["mu"].values, SnapshotRows(folder / f"{name}.h5", meta)

    mu, U = sets("train")
    ds = fit_study(SETTINGS, 0, None, X, mu, U, V)
    fit_s = time.perf_counter() - t0
    del U
    gp = gpmod.GP.from_dataset(ds, "gp")
    mut, Ut = sets("test")
    r = gpmod.pod_gp_test_metrics(gp, V, X, mut, Ut, 0.0, ds["coefficient_interval_factor"].values,
                                  ds["nodal_interval_factor"].values, SETTINGS["out_of_range_level"])
    out = {"seconds": time.perf_counter() - t0, "fit_seconds": fit_s, "base_mb": base, "peak_mb": rss_mb(),
           "modes_mb": V.nbytes / 2 ** 20, "x_mb": (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2 ** 20}
    out["extra_mb"] = out["peak_mb"] - base
    written = {f"gp/{k}": ds[k].values for k in ds.data_vars if ds[k].dtype.kind in "fiu"}
    written.update({f"metrics/{k}": np.asarray(v, dtype=float) for k, v in r.items() if k not in ("u_mean", "u_sd")})
    written.update({"metrics/u_mean_0": np.asarray(r["u_mean"][0]), "metrics/u_sd_0": np.asarray(r["u_sd"][0])})
    np.savez(folder / f"{which}.npz", **written)
    return out


def main(argv=None):
    args = parser(__doc__, 30, "panel of the blocked POD; other passes 1/16 of it (MB)", 12).parse_args(argv)

    def show(which, r, matrix_mb):
        if which.endswith("gp"):
            print(f"{which:7s} {r['seconds']:7.2f} s (fit {r['fit_seconds']:.2f} s)  peak RSS {r['peak_mb']:8.1f} MB, "
                  f"{r['extra_mb']:8.1f} MB above imports = {r['extra_mb'] / matrix_mb:5.2f} x the train matrix "
                  f"({matrix_mb:.1f} MB)")

    def report(folder, res, matrix_mb):
        import numpy as np

        old, new = np.load(folder / "old_gp.npz"), np.load(folder / "new_gp.npz")
        diff = {}
        for k in old.files:
            a, b = old[k].astype(float), new[k].astype(float)
            scale = np.nanmax(np.abs(a)) if a.size else 0.0
            diff[k] = float(np.nanmax(np.abs(a - b)) / scale) if a.size and scale > 0 else float(np.abs(a - b).max(initial=0))
        worst = sorted(diff.items(), key=lambda kv: -kv[1])[:5]
        print("max |old - new| / max |old| of what the stages write, largest: "
              + ", ".join(f"{k} {v:.1e}" for k, v in worst))
        ratio = res["old_gp"]["extra_mb"] / max(res["new_gp"]["extra_mb"], 1)
        print(f"ratios old/new: GP stages memory {ratio:.1f} x, time "
              f"{res['old_gp']['seconds'] / res['new_gp']['seconds']:.2f} x")
        return {"dofs": args.dofs, "samples": args.samples, "test_samples": args.test_samples,
                "block_mb": args.block_mb, "matrix_mb": round(matrix_mb, 1), "modes": res["pod"]["modes"],
                **{f"{w}_{k}": round(v, 2) for w in ("old_gp", "new_gp") for k, v in res[w].items()},
                "memory_ratio": round(ratio, 2), "max_relative_diff": max(diff.values()),
                "max_relative_diff_outside_cv": max(v for k, v in diff.items() if not any(
                    s in k for s in ("variance_scale", "interval_factor", "coverage", "calibration", "z_sd")))}

    return drive(args, __file__, make, lambda which, folder: phase(which, folder, args.max_modes, args.block_mb),
                 ("gather", "pod", "old_gp", "new_gp"), show, report)


if __name__ == "__main__":
    sys.exit(main())
