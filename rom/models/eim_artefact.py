"""The EIM artefact (rom/eim.h5): what the eim stage computes and how the RB stages read it back.

Function EIM of the non-affine coefficient g at element centroids, with the rigorous bound of its
error over the parameter box (eim.taylor_bound) for every number of terms; and, optionally, the
nonintrusive matrix EIM of A(mu) from matrices delivered by the FOM, with the exact operator norm
of its error at every training matrix (eim_rb.operator_errors).

For a black box with an entries mode (capability operator_entries; `entries_eim_dataset`) there is no
coefficient to interpolate: the artefact holds the matrix EIM of A(mu) and the EIM of f(mu) (variables
rhs_*, with the dual norm ||f(mu_i) - f_M(mu_i)||_{X'} at every training and test parameter), both from
the entries the code delivered, and attribute kind = 'entries'. The maxima the RB bound carries
(matrix_operator_error, rhs_error) are over the training and the test parameters.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp
import xarray as xr

from rom.reduction.eim import EIMBasis, eim, residual_sup_norms, taylor_bound

log = logging.getLogger("rom.eim")


def test_errors(E: EIMBasis, G_test: np.ndarray) -> np.ndarray:
    """Max-norm interpolation error over the test functions with 0..M terms."""
    return residual_sup_norms(E, G_test).max(axis=1)


def eim_dataset(problem, mu_train: np.ndarray, mu_test: np.ndarray, bounds: np.ndarray, max_modes: int, tol: float,
                matrix: bool, bound_grid: int, bound_order: int) -> xr.Dataset:
    """The EIM artefact's variables and attributes (parameter names are the caller's coordinates).
    bounds (d, 2): the parameter box over which the rigorous bound of the function EIM holds."""
    from rom.hifi.discretization import fem
    from rom.models.eim_rb import operator_errors

    xy = problem.mesh.centroids
    t0 = time.perf_counter()
    E = eim(problem.g(xy, mu_train), max_modes, tol)
    seconds = time.perf_counter() - t0
    log.info("function EIM of g at %d element centroids over %d training parameters: %d terms (at most %d), max "
             "training error %.2e (%.2f s)", len(xy), len(mu_train), E.M, max_modes, E.max_errors[E.M], seconds)
    data = {
        "basis": (("term", "triangle"), E.basis, {"long_name": "collateral basis q_m of g at element centroids"}),
        "points": ("term", E.points, {"long_name": "magic points (triangle index)"}),
        "xy": (("term", "xy"), xy[E.points]),
        "mu_selected": (("term", "parameter"), mu_train[E.selected]),
        "train_max_error": ("n_terms", E.max_errors, {"long_name": "max training interpolation error (max norm)"}),
        "test_max_error": ("n_terms", test_errors(E, problem.g(xy, mu_test))),
        "mu_train": (("train_sample", "parameter"), mu_train),
    }
    attrs = {"M": E.M, "next_point": E.next_point, "tol": tol, "seconds": seconds, "matrix": int(matrix)}
    if hasattr(problem, "g_derivative"):
        axes = list(problem.g_parameters)
        t0 = time.perf_counter()
        T = taylor_bound(E, bounds[axes, 0], bounds[axes, 1], bound_grid, bound_order,
                         lambda s, a: problem.g_derivative(xy, s, a), problem.g_derivative_bound(bound_order))
        data.update({
            "bound_max_error": ("n_terms", T.bound, {"long_name": "rigorous bound of sup over the parameter box of "
                                                                  "||g - I_M g||_inf (eim.taylor_bound)"}),
            "bound_taylor": ("n_terms", T.taylor, {"long_name": "max over the grid of the Taylor sum"}),
            "bound_remainder": ("n_terms", T.remainder, {"long_name": "(1 + Lambda_M) C_p |delta|^p / p!"}),
            "lebesgue_constant": ("n_terms", T.lebesgue),
        })
        attrs.update(bound_grid=bound_grid, bound_order=bound_order, bound_seconds=time.perf_counter() - t0)
        log.info("function EIM: %d terms, max training error %.2e, rigorous bound %.2e (%.1f s)",
                 E.M, E.max_errors[E.M], T.bound[E.M], attrs["bound_seconds"])
    if matrix:
        pattern = fem.Pattern.build(problem.mesh)
        t0 = time.perf_counter()
        # The FOM as a black box: whole matrices at the training parameters, nothing else.
        log.info("matrix EIM: %d FOM matrices of %d entries", len(mu_train), pattern.nnz)
        A = np.stack([problem.operator_values(mu, pattern) for mu in mu_train])
        Em = eim(A, max_modes, tol)
        A_test = np.stack([problem.operator_values(mu, pattern) for mu in mu_test])
        rows = np.repeat(np.arange(pattern.n_rows), np.diff(pattern.indptr))
        csr = _csr(pattern)
        X = csr(problem.energy_product(pattern))
        op, op_test = operator_errors(Em, A, csr, X), operator_errors(Em, A_test, csr, X)
        data.update(matrix_variables(Em, A, A_test, op, op_test, mu_train, rows, pattern))
        # The maximum the RB bound carries: over the training and the test matrices (the greedy fits the former).
        attrs.update(matrix_M=Em.M, matrix_next_slot=Em.next_point, matrix_seconds=time.perf_counter() - t0,
                     matrix_operator_error=float(np.max(np.r_[op, op_test])))
        log.info("matrix EIM: %d terms, max training error %.2e, max operator error %.2e (training and test "
                 "matrices; %.2f s)", Em.M, Em.max_errors[Em.M], attrs["matrix_operator_error"], attrs["matrix_seconds"])
    return xr.Dataset(data, attrs=attrs)


def entries_eim_dataset(problem, mu_train: np.ndarray, mu_test: np.ndarray, max_modes: int, tol: float
                        ) -> xr.Dataset:
    """The EIM artefact of a black box with an entries mode: the matrix EIM of A(mu) and the EIM of
    f(mu) over every entry of the mesh's P1 pattern at the training parameters (one entries_command run
    for training and test parameters together), the operator norm of the error at every training
    matrix and the X' norm of the load's."""
    from scipy.sparse.linalg import splu

    from rom.hifi.discretization import fem
    from rom.models.eim_rb import operator_errors

    pattern = fem.Pattern.build(problem.mesh)
    rows = np.repeat(np.arange(pattern.n_rows), np.diff(pattern.indptr))
    t0 = time.perf_counter()
    n = len(mu_train)
    # The code as a black box: entries of A and f at the training and test parameters, nothing else.
    log.info("entries of A(mu) (%d per matrix) and f(mu) (%d) at %d training and %d test parameters, one run of "
             "entries_command", pattern.nnz, problem.mesh.n_nodes, n, len(mu_test))
    A_all, F_all = problem.matrices_at(np.vstack([mu_train, mu_test]), pattern)
    seconds_entries = time.perf_counter() - t0
    A, A_test, F, F_test = A_all[:n], A_all[n:], F_all[:n], F_all[n:]
    csr = _csr(pattern)
    X = csr(problem.energy_product(pattern))
    Em, Ef = eim(A, max_modes, tol), eim(F, max_modes, tol)
    # The errors the RB bound carries: computed at the training and at the test parameters (the greedy
    # fits the training set; the test set keeps the maximum from being the fitted points' alone).
    op, op_test = operator_errors(Em, A, csr, X), operator_errors(Em, A_test, csr, X)
    lu = splu(X.tocsc())

    def dual_norms(G):
        R = G - Ef.interpolate(G[:, Ef.points])
        return np.sqrt(np.maximum(np.einsum("ij,ji->i", R, lu.solve(R.T)), 0.0))

    rhs_err, rhs_err_test = dual_norms(F), dual_norms(F_test)
    seconds = time.perf_counter() - t0
    data = {
        "mu_train": (("train_sample", "parameter"), mu_train),
        **matrix_variables(Em, A, A_test, op, op_test, mu_train, rows, pattern),
        "rhs_basis": (("fterm", "node"), Ef.basis, {"long_name": "collateral basis of f(mu) at the nodes"}),
        "rhs_rows": ("fterm", Ef.points, {"long_name": "magic rows of f"}),
        "rhs_mu_selected": (("fterm", "parameter"), mu_train[Ef.selected]),
        "rhs_train_max_error": ("n_fterms", Ef.max_errors),
        "rhs_test_max_error": ("n_fterms", test_errors(Ef, F_test)),
        "rhs_train_error": ("train_sample", rhs_err, {"long_name": "||f(mu_i) - f_M(mu_i)||_{X'} at the training "
                                                                   "parameters"}),
        "rhs_test_error": ("test_sample", rhs_err_test, {"long_name": "||f(mu_i) - f_M(mu_i)||_{X'} at the test "
                                                                      "parameters"}),
    }
    attrs = {"kind": "entries", "M": 0, "matrix": 1, "matrix_M": Em.M, "matrix_next_slot": Em.next_point,
             "rhs_M": Ef.M, "rhs_next_row": Ef.next_point, "tol": tol, "seconds": seconds,
             "matrix_seconds": seconds, "entries_seconds": seconds_entries,
             "matrix_operator_error": float(np.max(np.r_[op, op_test])),
             "rhs_error": float(np.max(np.r_[rhs_err, rhs_err_test]))}
    log.info("matrix EIM of A: %d terms, max training error %.2e, max operator error %.2e (training and test); EIM "
             "of f: %d terms, max X' error %.2e (training and test) (%.2f s, of which %.2f s in entries_command)",
             Em.M, Em.max_errors[Em.M], attrs["matrix_operator_error"], Ef.M, attrs["rhs_error"], seconds,
             seconds_entries)
    return xr.Dataset(data, attrs=attrs)


def matrix_variables(Em: EIMBasis, A, A_test, op, op_test, mu_train, rows, pattern) -> dict:
    """The matrix EIM's variables of the artefact (prefix matrix_): the delivered matrices it selected, its
    basis and magic entries, its errors and the operator-norm errors at the training and test matrices."""
    return {
        "matrix_snapshots": (("mterm", "nnz"), A[Em.selected],
                             {"long_name": "delivered A(mu_l) at the selected parameters (CSR values)"}),
        "matrix_coeffs": (("mterm", "mterm_"), Em.snapshot_coeffs, {"long_name": "q_m = sum_l C[m, l] A(mu_l)"}),
        "matrix_basis": (("mterm", "nnz"), Em.basis),
        "matrix_slots": ("mterm", Em.points, {"long_name": "magic entries (CSR positions)"}),
        "matrix_rows": ("mterm", rows[Em.points]),
        "matrix_cols": ("mterm", pattern.indices[Em.points]),
        "matrix_mu_selected": (("mterm", "parameter"), mu_train[Em.selected]),
        "matrix_train_max_error": ("n_mterms", Em.max_errors),
        "matrix_test_max_error": ("n_mterms", test_errors(Em, A_test)),
        "matrix_train_operator_error": ("train_sample", op, {"long_name": "||A(mu_i) - A_M(mu_i)||_{X->X'} at the "
                                                                         "training matrices (generalized eigenvalue "
                                                                         "problem)"}),
        "matrix_test_operator_error": ("test_sample", op_test, {"long_name": "||A(mu_i) - A_M(mu_i)||_{X->X'} at the "
                                                                             "test matrices"}),
    }


def _csr(pattern):
    def csr(values):
        return sp.csr_matrix((values, pattern.indices, pattern.indptr), shape=(pattern.n_dofs,) * 2)
    return csr


def eim_from_dataset(ds: xr.Dataset, prefix: str = "") -> EIMBasis:
    """The function EIM (prefix ''), the matrix EIM (prefix 'matrix_') or the load's EIM (prefix 'rhs_',
    black boxes with an entries mode) of an EIM artefact."""
    if prefix == "rhs_":
        basis, points, nxt, C = ds["rhs_basis"].values, ds["rhs_rows"].values, int(ds.attrs["rhs_next_row"]), None
    elif prefix:
        basis, points = ds["matrix_basis"].values, ds["matrix_slots"].values
        nxt, C = int(ds.attrs["matrix_next_slot"]), ds["matrix_coeffs"].values
    else:
        basis, points, nxt, C = ds["basis"].values, ds["points"].values, int(ds.attrs["next_point"]), None
    M = len(points)
    return EIMBasis(basis, points, np.arange(M), C if C is not None else np.eye(M), np.zeros(M + 1), nxt,
                    basis[:, nxt] if nxt >= 0 else None)
