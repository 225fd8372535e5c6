"""The uq stage through the real `snakemake` CLI on a tiny thermal block with two certified outputs
(rb.outputs: the flux through the bottom side and the mean over block 3): the certified statistics of a
1024-point Sobol' sample, the Sobol' indices, and the check against 100 FOM solves in the stage; then
checked here against FOM solves of our own (SciPy's direct solver on the affine terms of
fom/operators.h5, theta_q(mu) = mu_q and one load term, the thermal block's definition): the
certified bracket of the sample mean and of the sample quantiles contains the FOM's on the SAME sample
(exact), and the FOM Monte Carlo mean of the independent check sample lies within the stated Monte
Carlo error of the certified interval. Bad uq settings are refused in one line before any job.

A second study runs uq.model pod_gp (simulate, pod, gp, uq) and checks its FOM coefficients and the recorded
check. One Snakemake run per module (3 jobs: operators, reduced_basis, uq, on one core). The stage's FOM uses
the study's default backend (PETSc CG + GAMG, ksp_rtol 1e-12). Runtime about 11 s on one core (the
Snakemake run 7 s)."""
import json

import numpy as np
import pytest
import scipy.sparse.linalg as spla

from conftest import ROOT, run, tiny_study, write_yaml
from rom import artefacts, config
from rom.hifi.discretization.operators import Operators

SNAKEMAKE = [ROOT / ".venv" / "bin" / "snakemake"] if (ROOT / ".venv" / "bin" / "snakemake").exists() else ["snakemake"]
EPS = np.finfo(float).eps
OUTPUTS = [{"name": "flux_bottom", "kind": "boundary_flux", "side": "bottom"},
           {"name": "mean_3", "kind": "region_mean", "blocks": [3]}]
SAMPLES, BASE, VALIDATE, D = 1024, 256, 100, 4
STUDY = {
    "name": "uqtb",
    "problem": {"name": "thermal_block", "mesh": {"n": 16}, "blocks": [2, 2]},
    "design": {"method": "lhs", "train": {"size": 2, "seed": 1}, "test": {"size": 2, "seed": 2}},
    # A coarse RB (tol 1e-3, at most 8 modes): output bounds of 1e-5 relative, far above the FOM's
    # rounding (below 1e-9, see fom_tolerance), so the certified brackets are tested, not rounding.
    "rb": {"enabled": True, "train_size": 100, "tol": 1e-3, "max_modes": 8, "n_timing": 2, "batch_size": 10,
           "outputs": OUTPUTS},
    "uq": {"enabled": True, "samples": SAMPLES, "design": "sobol", "seed": 17, "validate": VALIDATE,
           "sensitivity": {"base_samples": BASE}},
}


@pytest.fixture(scope="module")
def uq_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("uq")
    write_yaml(d / "cfg.yaml", STUDY)
    run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", d, "--configfile", d / "cfg.yaml", "--cores", "1",
         "results/uqtb/sections/uq.json"], timeout=600)
    res = d / "results" / "uqtb"
    return d, res, artefacts.read(res / "uq" / "uq.h5"), json.loads((res / "sections" / "uq.json").read_text())


# -- an independent FOM ---------------------------------------------------------------------------------
def fom_fields(ops: Operators, mu: np.ndarray) -> np.ndarray:
    """Free-dof fields by SciPy's sparse LU of A(mu) = sum_q mu_q A_q, f = f_0 (thermal block)."""
    return np.array([spla.spsolve(sum(m * A for m, A in zip(row, ops.A_terms)).tocsc(), ops.f_terms[0]) for row in mu])


def region_mean_3(ops: Operators, U: np.ndarray) -> np.ndarray:
    """Mean of u over block 3 (x > 1/2, y > 1/2) by the P1 quadrature of each triangle, |T| (u_a + u_b + u_c) / 3,
    from the mesh in the artefact (boundary nodes are 0): independent of the code's output functional."""
    nodes, tri = ops.nodes, ops.triangles
    centroid = nodes[tri].mean(axis=1)
    inside = (centroid[:, 0] > 0.5) & (centroid[:, 1] > 0.5)  # the block edge x = y = 1/2 is a mesh line (n even)
    p = nodes[tri[inside]]
    area = 0.5 * np.abs((p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) *
                        (p[:, 1, 1] - p[:, 0, 1]))
    full = np.zeros((len(U), len(nodes)))
    full[:, ops.interior_nodes] = U
    return (full[:, tri[inside]].mean(axis=2) @ area) / area.sum()


def fom_outputs(res, mu):
    """(outputs (n, 2) in the order of OUTPUTS, a bound of each output's FOM error (n, 2)). flux_bottom by
    the problem's output functional (the output's definition, as rom.models.evaluate computes it) on our
    fields, mean_3 by region_mean_3."""
    from rom.hifi.problems import ThermalBlock
    from rom.models.output import output_functional

    ops = Operators.from_dataset(artefacts.read(res / "fom" / "operators.h5"))
    U = fom_fields(ops, mu)
    flux = output_functional(ThermalBlock(16, (2, 2)), OUTPUTS[0])
    S = np.column_stack([flux.value(mu, U), region_mean_3(ops, U)])
    # The LU solve is backward stable: ||u - u_h|| <= c n eps cond(A) ||u|| with a modest c; cond(A(mu)) <=
    # (max mu / min mu) cond(A(1)) = 10 cond(A(1)) (A(mu) lies between 0.1 A(1) and A(1)), and 10 n eps below
    # covers c. An output s = lam(mu) . (L u) + offset then moves by at most sum_j |lam_j| ||L_j|| ||u - u_h||;
    # mean_3 is an average of nodal values (|s error| <= max |u - u_h| <= ||u - u_h||).
    A1 = sum(ops.A_terms).toarray()
    cond = 10 * np.linalg.cond(A1)
    err_u = 10 * len(A1) * EPS * cond * np.linalg.norm(U, axis=1)
    flux_norm = np.abs(flux.lam(mu)) @ np.linalg.norm(flux.terms, axis=1)
    return S, np.column_stack([flux_norm * err_u, err_u])


# -- the stage through Snakemake ---------------------------------------------------------------------------
@pytest.mark.pipeline
def test_uq_stage_counts_sobol_indices_and_fom_check(uq_run):
    d, res, ds, section = uq_run
    names = [o["name"] for o in OUTPUTS]
    # Exact sample counts: the Monte Carlo sample, the Saltelli design N (d + 2), the FOM check.
    assert ds.sizes["sample"] == SAMPLES and ds.attrs["samples"] == SAMPLES and ds["mu"].shape == (SAMPLES, D)
    assert ds.attrs["sobol_evaluations"] == BASE * (D + 2) and ds.attrs["sobol_N"] == BASE
    assert ds.attrs["validation_solves"] == VALIDATE and ds.sizes["validation_sample"] == VALIDATE
    assert [str(v) for v in ds["output"].values] == names and ds.attrs["model"] == "rb"
    assert ds.attrs["kind"] == "certified"
    # Sobol' indices in [0, 1] up to their own bootstrap half-widths, total >= first order up to both.
    S1, S1c, ST, STc = (ds[k].values for k in ("S1", "S1_conf", "ST", "ST_conf"))
    assert np.all(S1 >= -S1c) and np.all(S1 <= 1 + S1c) and np.all(ST >= -STc) and np.all(ST <= 1 + STc)
    assert np.all(ST + STc + S1c >= S1)
    # mean_3 is the mean over block 3: its own conductivity mu_3 dominates (measured ST 0.82 +- 0.14, the
    # others <= 0.09 +- 0.03).
    assert np.argmax(ST[1]) == 3 and ST[1, 3] - STc[1, 3] > np.max(ST[1, :3] + STc[1, :3])
    # The stage's FOM outputs against ours at the same parameters: PETSc CG stops at ksp_rtol 1e-12 (relative
    # preconditioned residual); with cond <= 1e4 here (fom_outputs) the outputs agree to 1e-12 * 1e4 = 1e-8
    # relative to their scale, plus our own LU error bound.
    mu_v = ds["validation_mu"].values
    S_v, tol_v = fom_outputs(res, mu_v)
    scale = np.abs(S_v).max(axis=0)
    assert np.all(np.abs(ds["validation_value"].values - S_v) <= 1e-8 * scale + tol_v)
    # The certified interval of the mean, widened by 3 standard errors of both sample means combined (the
    # stated Monte Carlo error), contains the FOM Monte Carlo mean of the check sample (a 99.7% statement,
    # fixed seeds; measured: distance to the interval / allowance 0.11 and 0.33).
    se = np.sqrt(ds["value"].values.std(axis=0, ddof=1) ** 2 / SAMPLES + S_v.std(axis=0, ddof=1) ** 2 / VALIDATE)
    lo, hi = ds["mean_bounds"].values.T
    fom_mean = S_v.mean(axis=0)
    assert np.all(lo - 3 * se <= fom_mean) and np.all(fom_mean <= hi + 3 * se), (lo, hi, fom_mean, se)
    # ... which is what the stage checked and recorded (its own combined standard error, the same numbers).
    assert np.allclose(ds["check_combined_se"].values, se, rtol=1e-9)
    assert np.all(ds["check_mean_ok"].values == 1) and np.all(ds["check_quantile_ok"].values == 1)
    # No warning of the stage's own (the section repeats the RB's: its greedy stopped at rb.max_modes = 8).
    assert ds.attrs["validation_passed"] == 1 and not [w for w in section["warnings"] if w.startswith("uq:")]
    assert any(w.startswith("rb: tolerance") for w in section["warnings"])
    # The report section states the error treatment and the extrapolated speed-up; its figures exist.
    assert "Error treatment: certified" in section["text"] and "extrapolated" in section["text"]
    assert section["metrics"]["uq speed-up over a FOM Monte Carlo of the same size (extrapolated)"] > 0
    assert section["metrics"]["uq FOM seconds per solve, from"] == "validation solves"
    assert len(section["figures"]) == 2 and all((d / f["file"]).stat().st_size > 0 for f in section["figures"])
    # The report depends on the section when uq runs (a dry run plans the report with it as an input).
    plan = run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", d, "--configfile", d / "cfg.yaml", "-n", "--cores", "1",
                "--debug-dag", "results/uqtb/report.html"], timeout=300)
    assert "results/uqtb/sections/uq.json" in plan.stdout + plan.stderr


@pytest.mark.pipeline
def test_certified_intervals_contain_a_high_accuracy_fom_monte_carlo_mean(uq_run):
    """Certified intervals on the thermal block contain a high-accuracy FOM Monte Carlo mean of the output:
    the FOM's sample mean and sample quantiles over the SAME 1024 parameters lie inside the certified
    brackets of the surrogate's sample statistics (an exact claim, no probability)."""
    d, res, ds, _ = uq_run
    mu = ds["mu"].values
    S, tol = fom_outputs(res, mu)
    # Our FOM outputs obey the per-sample certificates |s - s_N| <= Delta (up to our own solve's error bound;
    # measured: largest |s - s_N| / Delta 0.41 and 0.29).
    assert np.all(np.abs(S - ds["value"].values) <= ds["error"].values + tol)
    # The mean: its computed value is within (n + 1) eps mean|s| of the exact mean of our outputs (any summation
    # order), and each output within tol of the true one.
    n = len(mu)
    slack = (n + 1) * EPS * np.abs(S).mean(axis=0) + tol.max(axis=0)
    mean = S.mean(axis=0)
    lo, hi = ds["mean_bounds"].values.T
    assert np.all(lo - slack <= mean) and np.all(mean <= hi + slack), (lo, mean, hi)
    # Meaningful: the brackets are far wider than that slack, and far narrower than the Monte Carlo error
    # (measured: half-widths 2.3e-6 and 7.3e-6, slack 4.8e-9 and 2.5e-9, standard errors 5.3e-4 and 9.1e-4).
    assert np.all(hi - lo > 100 * slack) and np.all(hi - lo < 0.1 * ds["mean_se"].values)
    # The sample quantiles (inverted_cdf: the order statistic of rank ceil(n q)) lie in their brackets.
    levels = ds["quantile"].values
    Q = np.quantile(S, levels, axis=0, method="inverted_cdf")
    qlo, qhi = ds["quantile_bounds"].values[..., 0], ds["quantile_bounds"].values[..., 1]
    assert np.all(qlo - tol.max(axis=0) <= Q) and np.all(Q <= qhi + tol.max(axis=0)), (qlo, Q, qhi)


# -- refusals before any job ---------------------------------------------------------------------------------
BAD = [
    ("rb model without rb", lambda s: s.update(uq={"enabled": True, "model": "rb"}),
     ["uq.model = rb: rb.enabled = false", "expected rb.enabled: true with rb.outputs"]),
    ("rb model without outputs", lambda s: s.update(rb={"enabled": True}, uq={"enabled": True, "model": "rb"}),
     ["uq.model = rb: rb.outputs is empty", "uq.model: pod_gp"]),
    ("auto without a model", lambda s: s.update(uq={"enabled": True}),
     ["uq.model = auto (resolved to pod_gp): the POD+GP model needs gp.enabled: true", "or uq.enabled: false"]),
    ("base samples not a power of 2",
     lambda s: s.update(rb={"enabled": True, "outputs": OUTPUTS[:1]},
                        uq={"enabled": True, "sensitivity": {"base_samples": 1000}}),
     ["uq.sensitivity.base_samples = 1000: not a power of 2", "512 or 1024"]),
    ("unknown rb output", lambda s: s.update(rb={"enabled": True, "outputs": OUTPUTS[:1]},
                                             uq={"enabled": True, "outputs": ["flux_top"]}),
     ["uq.outputs: 'flux_top' is not an output of model rb", "flux_bottom"]),
    ("unknown GP output", lambda s: s.update(gp={"enabled": True, "max_modes": 4},
                                             uq={"enabled": True, "outputs": ["pod_4"]}),
     ["uq.outputs: 'pod_4' is not an output of model pod_gp", "pod_0 ... pod_3"]),
    ("sobol sample not a power of 2", lambda s: s.update(gp={"enabled": True}, uq={"enabled": True, "samples": 1000}),
     ["uq.samples = 1000: design sobol", "512 or 1024", "uq.design: lhs or mc"]),
    ("one FOM check sample", lambda s: s.update(gp={"enabled": True}, uq={"enabled": True, "validate": 1}),
     ["uq.validate = 1", "expected 0 (off) or at least 2"]),
    ("bad design", lambda s: s.update(gp={"enabled": True}, uq={"enabled": True, "design": "halton"}),
     ["uq.design", "halton", "sobol"]),
    ("quantile out of range", lambda s: s.update(gp={"enabled": True}, uq={"enabled": True, "quantiles": [0.5, 1.5]}),
     ["uq.quantiles.1", "1.5"]),
    ("transient problem", lambda s: s.update(problem={"name": "heat", "mesh": {"n": 8}}, uq={"enabled": True}),
     ["uq.enabled = true: stage uq takes no problem with 'transient'", "or uq.enabled: false"]),
]


@pytest.mark.parametrize("case,mutate,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_uq_settings_are_refused_in_one_line(case, mutate, expected, tmp_path):
    study = tiny_study()
    mutate(study)
    path = write_yaml(tmp_path / "bad.yaml", study)
    with pytest.raises(config.ConfigError) as err:
        config.load(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message, message
    for piece in expected:
        assert piece in message, f"{piece!r} not in {message!r}"


def test_good_uq_settings_resolve_the_model():
    from rom.commands.uq import model_of

    rb = config.validate(tiny_study(rb={"enabled": True, "outputs": OUTPUTS}, uq={"enabled": True}))
    assert model_of(rb) == "rb" and rb["uq"]["samples"] == 4096 and rb["uq"]["quantiles"] == [0.05, 0.5, 0.95]
    assert rb["uq"]["sensitivity"] == {"enabled": True, "base_samples": 1024} and rb["uq"]["validate"] == 0
    gp = config.validate(tiny_study(rb={"enabled": True}, gp={"enabled": True}, uq={"enabled": True}))
    assert model_of(gp) == "pod_gp"


def test_mean_and_std_fields_of_the_sample_are_written_as_vtu(uq_run):
    """figures/uq/fields.vtu holds the mean and standard deviation over the 1024 parameters of the RB's
    nodal field (boundary values included), recomputed here from romflow.open's fields with numpy's
    mean/std (another summation order: equal to rounding, 1e-12 of the field's scale)."""
    import meshio

    import romflow
    from rom.hifi.problems.thermal import ThermalBlock

    d, res, ds, section = uq_run
    vtu = meshio.read(res / "figures" / "uq" / "fields.vtu")
    mu = ds["mu"].values
    p = ThermalBlock(16, blocks=(2, 2))
    F = p.full_field(mu, romflow.open(res).model("rb").predict(mu, fields=True).fields)
    assert vtu.points.shape[0] == p.mesh.n_nodes and "fields.vtu" in section["text"]
    scale = np.abs(F).max()
    np.testing.assert_allclose(vtu.point_data["mean"], F.mean(axis=0), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(vtu.point_data["std"], F.std(axis=0, ddof=1), rtol=0, atol=1e-12 * scale)


@pytest.mark.pipeline
def test_uq_through_pod_gp(tmp_path):
    """uq.model pod_gp through Snakemake (simulate, pod, gp, uq): predictive sampling of the POD
    coefficients, Sobol' indices, the FOM check on 60 solves, the VTU fields. The stage's FOM
    coefficients equal ours (SciPy LU solves of fom/operators.h5 projected on the POD modes with X,
    pod_k = u^T X v_k) to the FOM's CG tolerance, and its recorded check is the rule applied to them."""
    study = {**STUDY, "name": "uqgp", "rb": {"enabled": False},
             "design": {"method": "lhs", "train": {"size": 16, "seed": 1}, "test": {"size": 2, "seed": 2}},
             "pod": {"tol": 1e-10, "max_modes": 4},
             "gp": {"enabled": True, "max_modes": 3, "restarts": 2, "iterations": 100, "threads": 1},
             "uq": {"enabled": True, "model": "pod_gp", "samples": 256, "design": "sobol", "seed": 5,
                    "validate": 60, "gp_draws": 16, "sensitivity": {"base_samples": 64}}}
    write_yaml(tmp_path / "cfg.yaml", study)
    run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", tmp_path, "--configfile", tmp_path / "cfg.yaml", "--cores", "2",
         "results/uqgp/sections/uq.json"], timeout=600)
    res = tmp_path / "results" / "uqgp"
    ds = artefacts.read(res / "uq" / "uq.h5")
    assert ds.attrs["model"] == "pod_gp" and ds.attrs["kind"] == "predictive"
    assert [str(v) for v in ds["output"].values] == ["pod_0", "pod_1", "pod_2"]
    assert ds.sizes["sample"] == 256 and ds.attrs["sobol_evaluations"] == 64 * (D + 2)
    assert ds.attrs["validation_solves"] == 60 and (res / "figures" / "uq" / "fields.vtu").stat().st_size > 0
    ops = Operators.from_dataset(artefacts.read(res / "fom" / "operators.h5"))
    modes = artefacts.read(res / "surrogates" / "gp.h5")["modes"].values[:3]
    mu_v = ds["validation_mu"].values
    ours = fom_fields(ops, mu_v) @ (ops.X @ modes.T)
    # PETSc CG to ksp_rtol 1e-12 with cond(A) <= 1e4 here: 1e-8 of the coefficients' scale.
    np.testing.assert_allclose(ds["validation_value"].values, ours, rtol=0, atol=1e-8 * np.abs(ours).max())
    # The recorded verdict is the rule on the stage's FOM mean (a verdict, so on its own numbers: ours differ
    # by rounding, which could flip a mean lying at an interval's edge).
    lo, hi = ds["check_mean_interval"].values.T
    fom_mean = ds["validation_value"].values.mean(axis=0)
    np.testing.assert_array_equal(ds["check_mean_ok"].values.astype(bool), (lo <= fom_mean) & (fom_mean <= hi))
