"""Snapshots of a large study merged chunk by chunk and read lazily (rom.snapshots.gather_files,
SnapshotRows), and the blocked POD (rom.reduction.pod.pod_blocks): the results of the in-memory
path to rounding, without holding the snapshot matrix."""
import tracemalloc

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from rom import artefacts
from rom import snapshots as snap
from rom.reduction.pod import gram_blocks, pod, pod_blocks, projection_errors
from rom.reduction.pod_study import pod_study
from snapshot_files import chunk_files, merged, snapshot_file


def laplacian(n: int) -> sp.csr_matrix:
    return sp.diags([-np.ones(n - 1), 2.0 * np.ones(n) + 1e-2, -np.ones(n - 1)], [-1, 0, 1]).tocsr()


def smooth_set(m: int, n: int, seed: int = 0, modes: int = 12) -> np.ndarray:
    """Rows with a well-separated spectrum (amplitudes 0.5^k on sines of k half-waves)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 1.0, n)
    k = np.arange(1, modes + 1)
    return (rng.standard_normal((m, modes)) * 0.5 ** k) @ np.sin(np.pi * np.outer(k, x))


@pytest.mark.parametrize("steps", [0, 3])
def test_gather_files_equals_the_in_memory_merge(tmp_path, steps, monkeypatch):
    monkeypatch.setattr(snap, "COPY_BYTES", 3 * 8 * 40 * max(steps, 1))  # a few samples per slab
    U = smooth_set(23, 40)
    paths = chunk_files(tmp_path, U, 5, failed={4, 17}, transient_steps=steps)
    old = snap.gather([artefacts.read(p) for p in paths])
    new = artefacts.read(merged(tmp_path, paths))
    assert set(new.data_vars) == set(old.data_vars) and new["u"].dims == old["u"].dims
    for name in old.variables:
        np.testing.assert_array_equal(new[name].values, old[name].values, err_msg=name)
    assert new["u"].attrs["units"] == "K" and new.attrs["n_failed"] == 2 and new.attrs["chunks"] == 5
    assert int(np.isnan(new["u"].values).any(axis=tuple(range(1, new["u"].ndim))).sum()) == 2
    assert new.attrs["backend"] == "petsc" and "chunk" not in new.attrs  # conflicting attributes dropped
    with h5py.File(tmp_path / "new.h5") as f:
        assert f["u"].chunks[:-1] == (1,) * (f["u"].ndim - 1)  # one sample per HDF5 chunk: read by samples
    rows = snap.SnapshotRows(tmp_path / "new.h5")
    S = snap.snapshot_rows(old)
    assert rows.shape == S.shape == ((23 - 2) * max(steps, 1), 40)
    step = rows.per_sample
    np.testing.assert_array_equal(rows.rows(0, len(S)), S)
    np.testing.assert_array_equal(rows.rows(2 * step, 7 * step), S[2 * step:7 * step])
    if steps:
        with pytest.raises(ValueError, match="whole samples"):
            rows.rows(1, 2 * step)
    rows.close()


@pytest.mark.parametrize("block_rows", [1, 3, 7, 50, 1000])
def test_blocked_pod_equals_the_in_memory_pod(block_rows):
    n = 300
    S, X = smooth_set(41, n), laplacian(n)
    V0, lam0 = pod(S, X, 1e-12, 10)
    V1, lam1 = pod_blocks(snap.ArrayRows(S), X, 1e-12, 10, block_bytes=block_rows * 8 * n)
    assert lam1.shape == lam0.shape == (41,)
    assert np.abs(lam1 - lam0).max() <= 1e-12 * lam0[0]
    big = lam0 > 1e-3 * lam0[0]  # each to 1e-12 relative where rounding (eps lambda_1) allows it
    assert big.sum() >= 4
    np.testing.assert_allclose(lam1[big], lam0[big], rtol=1e-12)
    assert V1.shape == V0.shape == (10, n)
    sign = np.sign(np.einsum("ij,ij->i", V0, V1))
    assert np.abs(V0 - sign[:, None] * V1).max() < 1e-10
    G = gram_blocks(snap.ArrayRows(S), X, block_bytes=block_rows * 8 * n)
    np.testing.assert_array_equal(G, G.T)
    assert np.abs(G - S @ (X @ S.T)).max() < 1e-13 * np.abs(G).max()


def test_pod_study_on_files_equals_pod_study_on_arrays(tmp_path):
    n = 200
    X = laplacian(n)
    train = snapshot_file(tmp_path, "train", smooth_set(30, n, 1), 4, failed={3})
    test = snapshot_file(tmp_path, "test", smooth_set(9, n, 2), 4)
    a = pod_study(snap.snapshot_rows(artefacts.read(train)), snap.snapshot_rows(artefacts.read(test)), X, 1e-12, 9)
    S, T = snap.SnapshotRows(train), snap.SnapshotRows(test)
    b = pod_study(S, T, X, 1e-12, 9, block_bytes=5 * 8 * n)
    assert a.attrs == b.attrs and a.attrs["n_train_snapshots"] == 29
    assert np.abs(a["eigenvalues"].values - b["eigenvalues"].values).max() <= 1e-12 * a["eigenvalues"].values[0]
    sign = np.sign(np.einsum("ij,ij->i", a["modes"].values, b["modes"].values))
    assert np.abs(a["modes"].values - sign[:, None] * b["modes"].values).max() < 1e-10
    assert a["test_error"].shape == b["test_error"].shape == (10, 9)
    np.testing.assert_allclose(b["test_error"].values, a["test_error"].values, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(projection_errors(a["modes"].values, snap.snapshot_rows(artefacts.read(test)), X,
                                                 [0, 9])[0], 1.0)


def test_gather_and_blocked_pod_never_hold_the_snapshot_matrix(tmp_path, monkeypatch):
    """Allocations traced by numpy (tracemalloc): the merge holds at most a slab of samples, the POD a panel,
    a streamed block, the modes and X, where the in-memory path holds several copies of the matrix."""
    n, m = 20_000, 120  # the train matrix: 19.2 MB
    monkeypatch.setattr(snap, "COPY_BYTES", 1 << 20)
    U = smooth_set(m, n, 3)
    paths = chunk_files(tmp_path, U, 30)
    del U
    matrix = 8 * n * m
    X = laplacian(n)
    tracemalloc.start()
    try:
        merged(tmp_path, paths, "train.h5")
        gather_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        rows = snap.SnapshotRows(tmp_path / "train.h5")
        V, lam = pod_blocks(rows, X, 1e-14, 8, block_bytes=1 << 20)
        pod_peak = tracemalloc.get_traced_memory()[1]
        rows.close()
        tracemalloc.reset_peak()
        pod(snap.SnapshotRows(tmp_path / "train.h5").rows(0, m), X, 1e-14, 8)
        old_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(V) == 8 and lam[7] > 0
    print(f"traced peaks / matrix: gather {gather_peak / matrix:.3f}, blocked POD {pod_peak / matrix:.3f}, "
          f"in-memory POD {old_peak / matrix:.2f}")
    assert gather_peak < 0.2 * matrix, gather_peak / matrix
    budget = (1 << 20) + V.nbytes + X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    assert pod_peak < 1.5 * budget and pod_peak < 0.25 * matrix, (pod_peak / budget, pod_peak / matrix)
    assert old_peak > 2 * matrix  # the in-memory path: S and X S^T at least
