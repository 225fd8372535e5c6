"""romflow.open: a finished tiny study's models queried through the public API, against what the evaluation
stages wrote (bit for bit: the same model classes and batched calls on the same batch), against FOM
solutions refined in extended precision (the certified bounds), and the ONNX export of the neural
surrogate against PyTorch.

The tiny studies are built once per module by running the stages' CLIs in process (SciPy backend: no
PETSc), into the results layout the Snakemake rules use (results/<study>/...): a thermal block with two
certified outputs and POD+GP, and a declared diffusion on a gmsh mesh whose mesh file is removed before
the API opens the study; the nonlinear heat problem's local bases and adaptive ROM against their stages (bit for
bit), and `python -m rom export` of the streamed NN. Runtime about 10 s on one core, plus about 15 s for the
nonlinear study and the export."""
import json
import subprocess
import textwrap

import numpy as np
import pytest
import torch

import romflow
from conftest import PYTHON, env, tiny_study, torch_threads, write_yaml
from rom import artefacts

OUTPUTS = [{"name": "flux_bottom", "kind": "boundary_flux", "side": "bottom"},
           {"name": "mean_3", "kind": "region_mean", "blocks": [3]}]


def cli(main, *args):
    assert main([str(a) for a in args]) == 0, args


def simulated(res, cfg, sets=("train", "test")):
    """configure, sample, operators and simulate `sets` into the folder res = results/<study>/ with the
    pipeline's file names (snapshots/<set>.h5); returns (study file, operators artefact)."""
    from rom.cli import main as rom

    s, ops = res / "study.yaml", res / "fom" / "operators.h5"
    cli(rom, "configure", "--config", cfg, "--out", s)
    cli(rom, "sample", "--study-config", s, "--out", res / "parameters.h5")
    cli(rom, "operators", "--study-config", s, "--out", ops)
    for name in sets:
        cli(rom, "simulate", "--study-config", s, "--parameters", res / "parameters.h5", "--set", name, "--out",
            res / "snapshots" / f"{name}.h5")
    return s, ops


def chain(res, cfg, gp=True):
    """configure, sample, operators, simulate train/test, pod, reduced-basis, evaluate-rom, [gp, evaluate-gp]
    into the folder res = results/<study>/ with the pipeline's file names."""
    from rom.cli import main as rom
    from surrogates.cli import main as surrogates

    s, ops = simulated(res, cfg)
    train, test = res / "snapshots" / "train.h5", res / "snapshots" / "test.h5"
    cli(rom, "pod", "--study-config", s, "--operators", ops, "--train", train, "--test", test, "--out", res / "rom/pod.h5")
    cli(rom, "reduced-basis", "--study-config", s, "--operators", ops, "--out", res / "rom/rb.h5")
    cli(rom, "evaluate-rom", "--study-config", s, "--operators", ops, "--rb", res / "rom/rb.h5", "--test", test,
        "--out", res / "rom/rb_metrics.h5")
    if gp:
        cli(surrogates, "gp", "--study-config", s, "--operators", ops, "--train", train, "--pod", res / "rom/pod.h5",
            "--out", res / "surrogates/gp.h5")
        cli(surrogates, "evaluate-gp", "--study-config", s, "--operators", ops, "--test", test, "--gp",
            res / "surrogates/gp.h5", "--rb-metrics", res / "rom/rb_metrics.h5", "--metrics", res / "metrics/gp.h5",
            "--figures", res / "figures", "--section", res / "sections/gp.json")
    return res


def block_mlp(seed=1):
    """A network as the surrogate stages build it for the tiny thermal block: (mu_0..mu_3, t) -> the 289 nodal
    values of its 16 x 16 grid, with the block's bounds [0.1, 1] and a final time 1."""
    from surrogates.nn import MLP, Scaling

    torch.manual_seed(seed)
    return MLP(5, 289, width=16, depth=2).eval(), Scaling(np.tile([0.1, 1.0], (4, 1)), 1.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """results/tiny/ of a thermal block (mesh 16, 10 train / 5 test) with RB (two outputs) and POD+GP,
    and a neural-surrogate artefact written by surrogates.nn.save_model (listed, not openable)."""
    from surrogates.nn import save_model

    torch_threads()
    root = tmp_path_factory.mktemp("api")
    res = root / "results" / "tiny"
    cfg = write_yaml(root / "cfg.yaml", tiny_study(
        problem={"name": "thermal_block", "mesh": {"n": 16}, "blocks": [2, 2]},
        design={"method": "lhs", "train": {"size": 10, "seed": 1}, "test": {"size": 5, "seed": 2}},
        simulate={"chunk_size": 10, "backend": "scipy"},
        pod={"tol": 1e-10, "max_modes": 6},
        rb={"enabled": True, "train_size": 60, "tol": 1e-4, "max_modes": 12, "n_timing": 5, "batch_size": 20,
            "outputs": OUTPUTS},
        gp={"enabled": True, "max_modes": 4, "restarts": 2, "iterations": 100, "calibration": "loo", "threads": 1}))
    chain(res, cfg)
    save_model(res / "surrogate" / "online_fifo.pt", *block_mlp(), {"policy": "fifo", "mode": "online"})
    return res


@pytest.fixture(scope="module")
def declared(tmp_path_factory):
    """results/decl/ of a declared diffusion on a gmsh square (two regions, Dirichlet, Robin and Neumann
    groups, four parameters) with its RB; the mesh file is removed once the stages ran."""
    import gmsh_meshes

    root = tmp_path_factory.mktemp("api_declared")
    mesh = gmsh_meshes.box(2, 0.2, root / "box.msh", regions=2)
    cfg = write_yaml(root / "cfg.yaml", {
        "name": "decl",
        "problem": {"name": "diffusion", "mesh": {"file": str(mesh)}, "conductivity": {"left": "k_l", "right": "k_r"},
                    "source": {"left": 1.0}, "dirichlet": {"x0": 0.0}, "neumann": {"y0": "q"},
                    "robin": {"x1": {"h": "h", "u_inf": 0.5}}, "reference": {"k_l": 1.0, "k_r": 1.0, "h": 1.0}},
        "parameters": {"k_l": {"bounds": [0.5, 2.0]}, "k_r": {"bounds": [0.5, 2.0]}, "h": {"bounds": [0.5, 2.0]},
                       "q": {"bounds": [-1.0, 1.0]}},
        "design": {"method": "lhs", "train": {"size": 4, "seed": 1}, "test": {"size": 4, "seed": 2}},
        "simulate": {"chunk_size": 4, "backend": "scipy"},
        "pod": {"tol": 1e-10, "max_modes": 4},
        "rb": {"enabled": True, "train_size": 40, "tol": 1e-6, "max_modes": 15, "n_timing": 5, "batch_size": 20}})
    res = chain(root / "results" / "decl", cfg, gp=False)
    mesh.unlink()  # the API reads the artefacts alone
    return res


def one_blas_thread():
    """The BLAS thread count evaluate-rom runs its evaluation with (rom.commands.rb._single_thread): a bit-for-bit
    comparison holds for the same summation order, which another thread count may change."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg, msg
    return msg


# -- what a results folder holds ---------------------------------------------------------------------------
def test_models_are_listed_and_the_others_refused_by_name(tiny, tmp_path):
    import shutil

    study = romflow.open(tiny)
    assert study.name == "tiny" and study.models == ["rb", "pod_gp", "nn_fifo"]
    assert study.openable == ["rb", "pod_gp", "nn_fifo"]
    assert study.parameters == ["mu_0", "mu_1", "mu_2", "mu_3"]
    assert np.array_equal(study.bounds, np.tile([0.1, 1.0], (4, 1)))
    # A model listed by its artefact's presence whose file is not its stage's (an rb.h5 copied as an adaptive ROM):
    # refused in one line naming the model and what the file lacks.
    copy = tmp_path / "tiny"
    shutil.copytree(tiny, copy)
    shutil.copy(copy / "rom" / "rb.h5", copy / "rom" / "adaptive_rom.h5")
    other = romflow.open(copy)
    assert "adaptive" in other.models and "adaptive" in other.openable
    with pytest.raises(ValueError) as e:
        other.model("adaptive")
    msg = one_line(e)
    assert msg.startswith("adaptive: ") and "has no indicator_adaptive" in msg and "the adaptive_rom stage" in msg
    with pytest.raises(KeyError) as e:
        study.model("mmgp")
    assert "no model 'mmgp'" in str(e.value) and "rb, pod_gp, nn_fifo" in str(e.value)
    with pytest.raises(FileNotFoundError) as e:
        romflow.open(tiny / "rom")
    assert "no study.yaml" in one_line(e)
    assert study.model("rb") is study.model("rb")  # loaded once


# -- RB ------------------------------------------------------------------------------------------------------
def test_rb_predictions_equal_the_evaluation_stage_bit_for_bit(tiny):
    from rom.reduction.galerkin import leading_rows

    rb_ds, metrics = artefacts.read(tiny / "rom/rb.h5"), artefacts.read(tiny / "rom/rb_metrics.h5")
    mu = artefacts.converged(artefacts.read(tiny / "snapshots/test.h5"))["mu"].values
    model = romflow.open(tiny).model("rb")
    assert model.built_from == "parameter functions" and model.N == rb_ds.attrs["N"]
    with one_blas_thread():  # as evaluate-rom evaluates
        p = model.predict(mu)
    assert p.kind == "certified" and p.mu.shape == (len(mu), 4) and not p.extrapolated.any()
    assert p.coefficients is None and p.fields is None
    # evaluate-rom wrote the bound of the full basis through model.truncated(N): the same residual factor
    # (no zero rows to drop), the same batched solve and estimate on the same batch, hence equal bits.
    N, R = model.N, rb_ds["affine_R"].values
    assert leading_rows(R, R.shape[1]).shape == R.shape
    assert np.array_equal(p.field_error, metrics["affine_estimate"].values[N - 1])
    assert sorted(p.outputs) == sorted(p.error) == ["flux_bottom", "mean_3"]
    for name in p.outputs:
        assert np.array_equal(p.outputs[name], metrics[f"output_{name}_corrected"].values)
        assert np.array_equal(p.error[name], metrics[f"output_{name}_bound"].values)
    # One parameter is a batch of one. BLAS may sum R w in another order for another batch shape (measured:
    # 8e-14 relative), so the two agree to twice the worst-case rounding of each evaluation, the allowance
    # the certified bounds carry (rounding_bound of Delta; the corrected output's own 'rounding').
    q = model.predict(mu[2], fields=True)
    c = model.model.solve_batch(mu[2:3])
    assert q.field_error.shape == (1,)
    assert abs(q.field_error[0] - p.field_error[2]) <= 2 * model.model.rounding_bound(mu[2:3], c)[0]
    r = model.outputs["flux_bottom"].evaluate(mu[2:3])
    assert abs(q.outputs["flux_bottom"][0] - p.outputs["flux_bottom"][2]) <= 2 * r["rounding"][0]
    # fields=True: the reduced coefficients on the X-orthonormal basis, ||u_N||_X = ||c||_2.
    V = rb_ds["basis"].values
    assert q.coefficients.shape == (1, N) and q.fields.shape == (1, V.shape[1])
    assert np.array_equal(q.fields, q.coefficients @ V) and q.norm[0] == np.linalg.norm(q.coefficients[0])


def test_rb_bounds_hold_against_fom_solutions(tiny):
    """Delta(mu) >= ||u - u_N||_X and |s - s_N| <= bound at 3 parameters away from the training set, with
    u from FOM solves refined in extended precision (rom.models.evaluate.refined_solutions: ~1e-18 relative,
    so no allowance is needed for the reference)."""
    from rom.hifi.discretization.operators import Operators
    from rom.hifi.problems import ThermalBlock
    from rom.models.evaluate import refined_solutions
    from rom.models.output import output_functional

    ops = Operators.from_dataset(artefacts.read(tiny / "fom/operators.h5"))
    full = ThermalBlock(16, (2, 2))
    mu = 0.1 + 0.9 * np.random.default_rng(5).random((3, 4))
    U = refined_solutions(ops.A_terms, ops.f_terms, full.theta(mu), full.phi(mu))
    p = romflow.open(tiny).model("rb").predict(mu, fields=True)
    E = (U - p.fields.astype(U.dtype)).astype(float)
    err = np.sqrt(np.einsum("ij,ij->i", E, (ops.X @ E.T).T))
    ratio = {"u": err / p.field_error}
    for spec in OUTPUTS:
        s_true = output_functional(full, spec).value(mu, U).astype(float)
        ratio[spec["name"]] = np.abs(s_true - p.outputs[spec["name"]]) / p.error[spec["name"]]
    print({k: float(v.max()) for k, v in ratio.items()})  # measured: u 0.59, flux_bottom 0.095, mean_3 0.078
    for name, r in ratio.items():
        assert np.all(r <= 1.0), (name, r)
        assert np.all(r > 0), (name, r)  # a real error, not a reference equal to the prediction


def test_declared_problem_opens_without_its_mesh_file(declared):
    """The declared diffusion's theta, phi and coercivity bound come from its declaration (the mesh file is
    gone): bit for bit what evaluate-rom wrote, and the same parameter functions as the full problem."""
    metrics = artefacts.read(declared / "rom/rb_metrics.h5")
    mu = artefacts.converged(artefacts.read(declared / "snapshots/test.h5"))["mu"].values
    study = romflow.open(declared)
    model = study.model("rb")
    assert study.parameters == model.parameters == ["k_l", "k_r", "q", "h"]
    assert model.built_from == "parameter functions" and artefacts.read(declared / "rom/rb.h5").attrs["coercivity"] == "problem"
    with one_blas_thread():
        p = model.predict(mu)
    assert np.array_equal(p.field_error, metrics["affine_estimate"].values[model.N - 1])
    assert np.array_equal(model.model.coefficients.alpha_lb(mu), metrics["affine_alpha_lb"].values)
    assert p.outputs == {} and p.kind == "certified"


def test_parameter_functions_equal_the_full_problems(tmp_path):
    """Built from the declaration alone, theta, phi and the coercivity bound equal the full problem's bit for
    bit: a declared diffusion and elasticity (every boundary kind, numbers and parameters mixed) and the
    affine black box."""
    import gmsh_meshes
    from rom.hifi import registry
    from romflow.api import parameter_functions

    mesh = str(gmsh_meshes.box(2, 0.25, tmp_path / "box.msh", regions=2))
    specs = [
        {"name": "diffusion", "mesh": {"file": mesh}, "conductivity": {"left": "k_l", "right": 2.0},
         "source": {"left": "s", "right": 1.0}, "dirichlet": {"x0": "g", "y1": 0.0}, "neumann": {"y0": "q"},
         "robin": {"x1": {"h": "h", "u_inf": "u_inf"}}, "reference": {"k_l": 1.5, "h": 2.0}},
        {"name": "elasticity", "mesh": {"file": mesh}, "young": {"left": "E", "right": 2.0},
         "poisson": {"left": 0.3, "right": 0.25}, "body_force": {"left": [0.0, "b"]}, "traction": {"x1": ["t", 0.5]},
         "fixed": {"x0": [0.0, 0.0], "y0": [None, "v"]}},
        {"name": "external", "mesh": {"file": mesh}, "command": "true", "terms_command": "true {terms}",
         "parameters": ["a", "b"], "affine": {"operator": {"K": "a", "M": "1 + b**2"}, "rhs": {"f": "exp(a) - b", "g": 2},
                                              "x_reference": {"a": 1.0, "b": 0.5}}},
    ]
    for spec in specs:
        full = registry.make_problem(spec)
        light, how = parameter_functions(spec)
        assert how == "parameter functions" and type(light) is type(full)
        mu = 0.5 + np.random.default_rng(1).random((50, len(full.parameter_names)))
        for f in ("theta", "phi", "coercivity_lower_bound"):
            if hasattr(full, f):
                assert np.array_equal(getattr(light, f)(mu), getattr(full, f)(mu)), (spec["name"], f)


# -- POD + GP -------------------------------------------------------------------------------------------------
def test_gp_mean_and_std_equal_the_evaluation_stage(tiny):
    metrics, gp_ds = artefacts.read(tiny / "metrics/gp.h5"), artefacts.read(tiny / "surrogates/gp.h5")
    mu = artefacts.converged(artefacts.read(tiny / "snapshots/test.h5"))["mu"].values
    p = romflow.open(tiny).model("pod_gp").predict(mu, fields=True)
    k = metrics.sizes["mode"]
    assert p.kind == "predictive_std" and list(p.outputs) == list(p.error) == [f"pod_{j}" for j in range(k)]
    # evaluate-gp: predict_pod_gp on the same batch, threads and artefact: the same bits (sqrt is exact-rounded).
    mean = np.column_stack(list(p.outputs.values()))
    std = np.column_stack(list(p.error.values()))
    assert np.array_equal(mean, metrics["coefficients_mean"].values)
    assert np.array_equal(std, np.sqrt(metrics["coefficients_var"].values))
    V = gp_ds["modes"].values
    assert np.array_equal(p.fields, mean @ V) and np.array_equal(p.field_std, np.sqrt(metrics["coefficients_var"].values @ V**2))
    assert np.array_equal(p.field_error, np.sqrt(metrics["coefficients_var"].values.sum(axis=1)))


# -- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["rb", "pod_gp"])
def test_bad_parameters_are_refused_in_one_line(tiny, name):
    model = romflow.open(tiny).model(name)
    inside = [0.5, 0.5, 0.5, 0.5]
    with pytest.raises(ValueError) as e:
        model.predict([inside, [0.5, 1.5, 0.5, 0.5]])
    msg = one_line(e)
    assert msg.startswith(f"{name}: mu_1 = 1.5 (query 1) is outside the trained range [0.1, 1]") and "extrapolate=True" in msg
    p = model.predict([inside, [0.5, 1.5, 0.5, 0.5]], extrapolate=True)
    assert p.extrapolated.tolist() == [False, True] and np.all(np.isfinite(p.field_error))
    assert model.predict([0.5, 1.0 + 1e-14, 0.5, 0.1]).extrapolated.tolist() == [False]  # the boundary up to rounding
    if name == "rb":  # min-theta certifies nothing where a conductivity is <= 0: an infinite bound, not a number
        assert model.predict([-0.5, 0.5, 0.5, 0.5], extrapolate=True).field_error.tolist() == [np.inf]
    for bad, expected in (([0.5, 0.5, 0.5], "mu has shape (3,); expected (4,) or (n, 4)"),
                          (np.ones((2, 2, 4)), "mu has shape (2, 2, 4)"),
                          (np.empty((0, 4)), "with n >= 1"),
                          ([[0.5, 0.5, 0.5, 0.5], [0.5, np.nan, 0.5, 0.5]], "mu_1 = nan (query 1) is not finite"),
                          ([0.5, "x", 0.5, 0.5], "mu: not numbers")):
        with pytest.raises(ValueError) as e:
            model.predict(bad)
        assert expected in one_line(e), (bad, str(e.value))


# -- what opening imports -------------------------------------------------------------------------------------
def test_opening_and_predicting_imports_no_petsc(tiny):
    """In a fresh interpreter: import romflow, open the study, load both models and predict: petsc4py, mpi4py
    and the solver layer are never imported (timings printed, not asserted)."""
    code = textwrap.dedent(f"""
        import json, sys, time
        t0 = time.perf_counter()
        import romflow
        heavy_on_import = sorted(m for m in ("numpy", "xarray", "torch", "rom") if m in sys.modules)
        study = romflow.open({str(tiny)!r})
        t1 = time.perf_counter()
        rb = study.model("rb")
        t2 = time.perf_counter()
        p = rb.predict([[0.3, 0.5, 0.9, 0.2], [1.0, 0.1, 0.4, 0.7]])
        t3 = time.perf_counter()
        q = study.model("pod_gp").predict([0.3, 0.5, 0.9, 0.2])
        t4 = time.perf_counter()
        bad = sorted(m for m in sys.modules if m.split(".")[0] in ("petsc4py", "mpi4py", "gmsh", "meshio")
                     or m.startswith("rom.hifi.solvers"))
        print(json.dumps({{"heavy_on_import": heavy_on_import, "bad": bad, "open_s": t1 - t0, "load_rb_s": t2 - t1,
                          "predict_rb_s": t3 - t2, "gp_s": t4 - t3, "flux": p.outputs["flux_bottom"].tolist()}}))
    """)
    out = subprocess.run([PYTHON, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(r)  # measured on the 2-core VM: open 0.06 s, load rb 0.6 s, predict 1 ms, pod_gp 0.9 s (torch)
    assert r["heavy_on_import"] == [] and r["bad"] == []
    assert len(r["flux"]) == 2 and all(np.isfinite(r["flux"]))


# -- ONNX -----------------------------------------------------------------------------------------------------
U32 = 2.0**-24  # unit round-off of float32


def float32_difference_bound(net, x32: np.ndarray) -> np.ndarray:
    """(n, n_out) bound of |f1(x) - f2(x)| for two float32 evaluations of the MLP on the same float32 input,
    each summing in any order, with or without FMA: a layer's k products and its bias err by at most
    gamma_{k+1} (|W| |a| + |b|) (Higham, Thm 3.5), two evaluations by twice that, and the difference of
    the layer's inputs propagates through |W| (ReLU is 1-Lipschitz):
        D_l = |W_l| D_{l-1} + 2 gamma_{k_l + 1} (|W_l| |a_{l-1}| + |b_l|),  D_0 = 0,
    with the activations a evaluated in float64 (first order in u: the neglected terms are O(u^2))."""
    a, D = x32.astype(float), np.zeros(x32.shape)
    for layer in net.net:
        if isinstance(layer, torch.nn.Linear):
            W, b = layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy()
            k = W.shape[1] + 1
            g = k * U32 / (1 - k * U32)
            D = D @ np.abs(W).T + 2 * g * (np.abs(a) @ np.abs(W).T + np.abs(b))
            a = a @ W.T + b
        else:
            a = np.maximum(a, 0.0)
    return D


def test_onnx_export_matches_torch_on_1000_inputs(tiny, tmp_path):
    import onnx
    import onnxruntime

    from surrogates.nn import load_model
    from surrogates.onnx_export import RawSurrogate, export_onnx

    artefact = tiny / "surrogate" / "online_fifo.pt"
    path = export_onnx(artefact, tmp_path / "nn.onnx")
    net, scaling, _ = load_model(artefact)
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["romflow_policy"] == "fifo" and "(batch, 5) float64" in props["romflow_input"]
    rng = np.random.default_rng(7)
    mu = scaling.lo + (scaling.hi - scaling.lo) * rng.random((1000, 4))
    t = scaling.t_end * rng.random(1000)
    raw = np.column_stack([mu, t])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    u_onnx = session.run(None, {"mu_t": raw})[0]
    # torch: the surrogate's own path, Scaling.inputs (float64, rounded to float32) then the MLP.
    x32 = scaling.inputs(mu, t)
    with torch.no_grad():
        u_torch = net(torch.from_numpy(x32)).numpy()
        # The exported wrapper hands the network exactly these float32 inputs (the same float64 operations).
        assert torch.equal(((torch.from_numpy(raw) - RawSurrogate(net, scaling).shift) / RawSurrogate(net, scaling).scale)
                           .to(torch.float32), torch.from_numpy(x32))
    assert u_onnx.shape == (1000, 289) and u_onnx.dtype == np.float32
    bound = float32_difference_bound(net, x32)
    diff = np.abs(u_onnx.astype(float) - u_torch.astype(float))
    print(f"max |onnx - torch| {diff.max():.3e}, max ratio to the float32 bound {(diff / bound).max():.3e}")
    assert np.all(diff <= bound)
    # A dynamic batch axis: one row gives the same numbers as its row in the batch of 1000, to the same bound.
    one = session.run(None, {"mu_t": raw[3:4]})[0]
    assert one.shape == (1, 289) and np.all(np.abs(one[0] - u_torch[3]) <= bound[3])
    # A (network, Scaling) pair exports the same graph as the artefact.
    path2 = export_onnx(block_mlp(), tmp_path / "pair.onnx")
    again = onnxruntime.InferenceSession(str(path2), providers=["CPUExecutionProvider"]).run(None, {"mu_t": raw})[0]
    assert np.array_equal(again, u_onnx)
    with pytest.raises(ValueError) as e:
        export_onnx(net, tmp_path / "bare.onnx")
    assert "without its Scaling" in one_line(e)


# -- python -m rom predict ------------------------------------------------------------------------------
def test_predict_command_streams_a_csv_design_through_the_rb(tiny, tmp_path):
    """`python -m rom predict` on a CSV design (columns in another order than the study's parameters),
    in chunks of 7 rows: the numbers of the API's batched predict on the same rows (the same calls in
    another process, whose BLAS may pick other kernels: equal to a few units of the last place, 16 u
    max|value|, far below the bounds' own rounding allowance), and one-line refusals of a bad design."""

    def close(a, b):
        np.testing.assert_allclose(a, b, rtol=0, atol=16 * np.finfo(float).eps * np.abs(b).max())

    import h5py

    study = romflow.open(tiny)
    rb = study.model("rb")
    mu = np.random.default_rng(5).uniform(rb.bounds[:, 0], rb.bounds[:, 1], (23, len(rb.parameters)))
    order = rb.parameters[::-1]
    design = tmp_path / "design.csv"
    design.write_text(",".join(order) + "\n" + "\n".join(",".join(repr(v) for v in row[::-1]) for row in mu) + "\n")
    out = tmp_path / "preds.h5"
    run = [PYTHON, "-m", "rom", "predict", "--study", tiny, "--model", "rb", "--design", design, "--out", out,
           "--chunk", "7"]
    proc = subprocess.run([str(a) for a in run], env={**env(), "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with one_blas_thread():
        ref = [rb.predict(mu[i:i + 7]) for i in range(0, 23, 7)]
    with h5py.File(out) as h5:
        assert h5.attrs["kind"] == "certified" and h5["mu"].shape == (23, len(rb.parameters))
        np.testing.assert_array_equal(h5["mu"][()], mu)
        close(h5["field_error"][()], np.concatenate([r.field_error for r in ref]))
        for name in OUTPUTS:
            n = name["name"]
            close(h5[n][()], np.concatenate([r.outputs[n] for r in ref]))
            close(h5[f"{n}_error"][()], np.concatenate([r.error[n] for r in ref]))
    # Refusals: one line on stderr, exit status 2, naming what to change.
    bad = tmp_path / "bad.csv"
    for text, match in ((",".join(order[:-1]) + "\n1,2,3\n", f"no column {order[-1]!r}"),
                        (",".join(order) + "\n" + ",".join(["0.5"] * 3 + ["7.0"]) + "\n", "(design row 0)"),
                        (",".join(order) + "\n" + ",".join(["0.5"] * 3 + ["x"]) + "\n", "expected numbers")):
        bad.write_text(text)
        proc = subprocess.run([str(a) for a in run[:8]] + ["--design", str(bad), "--out", str(out)], env=env(),
                              capture_output=True,
                              text=True)
        assert proc.returncode == 2 and match in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_chunks_and_threads_do_not_change_a_rows_numbers(tiny):
    """predict splits a batch into chunks of Model.chunk rows, on a thread pool with threads > 1: bit for bit
    the numbers of one thread (the same chunks); another batching (batches of 1000 rows, the last chunk a
    single row) agrees to rounding: BLAS may pick another kernel for another number of rows, a few units
    of the last place (16 u max|value|), far below the bounds' own rounding allowance."""
    rb = romflow.open(tiny).model("rb")
    mu = np.random.default_rng(9).uniform(rb.bounds[:, 0], rb.bounds[:, 1], (2 * rb.chunk + 1, len(rb.parameters)))
    with one_blas_thread():
        one, two = rb.predict(mu), rb.predict(mu, threads=2)
        parts = [rb.predict(mu[i:i + 1000]) for i in range(0, len(mu), 1000)]

    def close(got, ref):
        np.testing.assert_allclose(got, np.concatenate(ref), rtol=0, atol=16 * np.finfo(float).eps * np.abs(got).max())

    np.testing.assert_array_equal(one.field_error, two.field_error)
    close(one.field_error, [p.field_error for p in parts])
    for k in one.outputs:
        np.testing.assert_array_equal(one.outputs[k], two.outputs[k])
        np.testing.assert_array_equal(one.error[k], two.error[k])
        close(one.outputs[k], [p.outputs[k] for p in parts])
        close(one.error[k], [p.error[k] for p in parts])


@pytest.fixture(scope="module")
def nonaffine(tmp_path_factory):
    """results/naff/ of the non-affine diffusion (mesh 10) with its EIM and an RB on both EIM kinds."""
    from rom.cli import main as rom

    torch_threads()
    root = tmp_path_factory.mktemp("api_naff")
    res = root / "results" / "naff"
    cfg = write_yaml(root / "cfg.yaml", {
        "name": "naff", "problem": {"name": "nonaffine_diffusion", "mesh": {"n": 10}},
        "design": {"method": "lhs", "train": {"size": 2, "seed": 31}, "test": {"size": 5, "seed": 32}},
        "simulate": {"chunk_size": 5, "backend": "scipy"},
        "eim": {"enabled": True, "train_size": 40, "test_size": 10, "tol": 1e-6, "max_modes": 20, "bound_grid": 9},
        "rb": {"enabled": True, "train_size": 30, "tol": 1e-3, "max_modes": 8, "n_timing": 2, "batch_size": 5}})
    s, ops = simulated(res, cfg, ("test",))
    test, eim, rb = res / "snapshots" / "test.h5", res / "rom" / "eim.h5", res / "rom" / "rb.h5"
    cli(rom, "eim", "--study-config", s, "--operators", ops, "--out", eim)
    cli(rom, "reduced-basis", "--study-config", s, "--operators", ops, "--eim", eim, "--out", rb)
    cli(rom, "evaluate-rom", "--study-config", s, "--operators", ops, "--rb", rb, "--eim", eim, "--test", test,
        "--out", res / "rom" / "rb_metrics.h5")
    return res


def test_eim_models_open_with_their_bounds_label(nonaffine):
    """The EIM kinds of an rb artefact open too (the full problem, the operators and EIM artefacts): the
    function EIM's bound is rigorous (kind 'certified'), the matrix EIM's measured on its training set
    ('indicator'); their bounds at the test parameters equal evaluate-rom's (the same model classes and
    batched calls: bit for bit), and hold against the FOM's test solutions."""
    study = romflow.open(nonaffine)
    test = artefacts.read(nonaffine / "snapshots" / "test.h5")
    m = artefacts.read(nonaffine / "rom" / "rb_metrics.h5")
    mu = test["mu"].values
    for name, kind, label in (("rb", "function_eim", "certified"), ("rb:matrix_eim", "matrix_eim", "indicator")):
        model = study.model(name)
        assert model.kind == label and model.name == f"rb:{kind}"
        with one_blas_thread():
            p = model.predict(mu)
        np.testing.assert_array_equal(p.field_error, m[f"{kind}_estimate"].values[-1])
        assert np.all(p.field_error >= m[f"{kind}_error"].values[-1]) and not p.outputs
    with pytest.raises(KeyError, match="rb:affine: .* holds the model kinds function_eim, matrix_eim"):
        study.model("rb:affine")


def test_field_statistics_of_pod_gp_add_the_predictive_variance(tiny):
    """rom.uq.propagate.field_statistics on POD + GP, in chunks of 7 rows: the mean of the predictive mean
    fields and the law of total variance (their sample variance plus the mean predictive variance, zero on
    the boundary), against numpy on the whole batch (to rounding: 1e-12 of the field's scale)."""
    from rom.hifi.problems.thermal import ThermalBlock
    from rom.uq.propagate import field_statistics

    gp = romflow.open(tiny).model("pod_gp")
    p = ThermalBlock(16, blocks=(2, 2))
    mu = np.random.default_rng(4).uniform(gp.bounds[:, 0], gp.bounds[:, 1], (30, len(gp.parameters)))
    got = field_statistics(p, gp, mu, chunk_rows=7)
    pred = gp.predict(mu, fields=True)
    F = p.full_field(mu, pred.fields)
    var = F.var(axis=0, ddof=1) + p.mesh.full_field((pred.field_std ** 2).mean(axis=0), 0.0)
    scale = np.abs(F).max()
    np.testing.assert_allclose(got["mean"], F.mean(axis=0), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(got["std"], np.sqrt(var), rtol=0, atol=1e-12 * scale)


@pytest.fixture(scope="module")
def tensile(tmp_path_factory):
    """results/tp/ of a tensile plate family (mesh 6): 10 train and 4 test shapes, the MMGP fitted on the
    former and its predictions of the latter (the mmgp stages' commands)."""
    from rom.cli import main as rom
    from surrogates.cli import main as surrogates

    torch_threads()
    root = tmp_path_factory.mktemp("api_mmgp")
    res = root / "results" / "tp"
    cfg = write_yaml(root / "cfg.yaml", {
        "name": "tp", "problem": {"name": "tensile_plate", "mesh": {"n": 6}},
        "design": {"train": {"size": 10, "seed": 1}, "test": {"size": 4, "seed": 2}},
        "simulate": {"backend": "scipy"},
        "mmgp": {"enabled": True, "geometry_modes": 2, "field_modes": 3, "restarts": 1, "iterations": 30}})
    s, geo = res / "study.yaml", res / "geometries"
    cli(rom, "configure", "--config", cfg, "--out", s)
    cli(rom, "sample", "--study-config", s, "--out", res / "parameters.h5")
    for name in ("train", "test"):
        cli(surrogates, "simulate-geometries", "--study-config", s, "--parameters", res / "parameters.h5", "--set", name,
            "--out", geo / f"{name}.h5")
    cli(surrogates, "mmgp-fit", "--study-config", s, "--train", geo / "train.h5", "--out", res / "surrogates/mmgp.h5")
    cli(surrogates, "mmgp-predict", "--study-config", s, "--model", res / "surrogates/mmgp.h5", "--family",
        geo / "test.h5", "--out", res / "surrogates/mmgp_test.h5")
    return res


def test_mmgp_opens_and_predicts_shapes_as_the_stage_did(tensile):
    """model('mmgp').predict_shapes on the test family's meshes and inputs: the scalars and their standard
    deviations, the fields and theirs, and the out-of-range flags are bit for bit those mmgp-predict wrote
    (the same MMGP.predict on the same shapes); predict(mu) refuses in one line (shapes, not parameters)."""
    from surrogates.mmgp.geometry import read_family

    study = romflow.open(tensile)
    assert "mmgp" in study.openable
    gp = study.model("mmgp")
    fam = artefacts.read(tensile / "geometries" / "test.h5")
    ref = artefacts.read(tensile / "surrogates" / "mmgp_test.h5")
    shapes = [(s.nodes, s.triangles) for s in read_family(fam)]
    p = gp.predict_shapes(shapes, fam["mu"].values, fields=True)
    assert p.kind == "predictive_std" and list(p.outputs) == [str(k) for k in ref["scalar"].values]
    for j, k in enumerate(p.outputs):
        np.testing.assert_array_equal(p.outputs[k], ref["scalars_pred"].values[:, j])
        np.testing.assert_array_equal(p.error[k], ref["scalars_std"].values[:, j])
    np.testing.assert_array_equal(p.extrapolated, ref["out_of_range"].values.astype(bool))
    offsets = ref["node_offset"].values
    for f in ("u_x", "von_mises"):
        np.testing.assert_array_equal(np.concatenate([fi[f] for fi in p.fields]), ref[f"{f}_pred"].values)
        np.testing.assert_array_equal(np.concatenate([fs[f] for fs in p.field_std]), ref[f"{f}_std"].values)
    assert len(p.fields) == len(offsets) - 1
    with pytest.raises(TypeError) as excinfo:
        gp.predict(fam["mu"].values)
    assert "predict_shapes" in one_line(excinfo)


def test_the_streamed_nn_opens_without_an_error_measure(tiny):
    """nn_fifo: the field at the final time (predict(fields=True)) and at given times (predict_trajectory)
    are the network written to the artefact evaluated on the surrogate's scaled inputs (torch directly on
    the model built by block_mlp: bit for bit), with kind 'none' and no error measure; the trained box is
    the network's scaling, refused outside in one line."""
    net, scaling = block_mlp()
    model = romflow.open(tiny).model("nn_fifo")
    mu = np.random.default_rng(2).uniform(scaling.lo, scaling.hi, (5, 4))
    p = model.predict(mu, fields=True)
    assert p.kind == "none" and not p.outputs and not p.error and np.isnan(p.field_error).all()
    with torch.no_grad():
        ref = net(torch.from_numpy(scaling.inputs(mu, np.full(5, scaling.t_end)))).numpy()
    np.testing.assert_array_equal(p.fields, ref)
    T = model.predict_trajectory(mu, [0.0, 0.1])
    with torch.no_grad():
        ref0 = net(torch.from_numpy(scaling.inputs(mu, np.zeros(5)))).numpy()
    assert T.shape == (5, 2, ref.shape[1]) and np.array_equal(T[:, 0], ref0)
    with pytest.raises(ValueError) as e:
        model.predict(np.c_[mu[:, :3], np.full(5, 9.0)])
    assert "outside the trained range" in one_line(e)


@pytest.fixture(scope="module")
def heat(tmp_path_factory):
    """results/heat/ of the transient heat problem (mesh 8, 10 steps) with its parabolic RB."""
    from rom.cli import main as rom

    root = tmp_path_factory.mktemp("api_heat")
    res = root / "results" / "heat"
    cfg = write_yaml(root / "cfg.yaml", {
        "name": "heat", "problem": {"name": "heat", "mesh": {"n": 8}, "dt": 0.01, "steps": 10},
        "design": {"method": "lhs", "train": {"size": 2, "seed": 1}, "test": {"size": 4, "seed": 2}},
        "simulate": {"chunk_size": 4, "backend": "scipy"},
        "rb": {"enabled": True, "train_size": 20, "tol": 1e-3, "max_modes": 10}})
    s, ops = simulated(res, cfg, ("test",))
    test = res / "snapshots" / "test.h5"
    cli(rom, "reduced-basis", "--study-config", s, "--operators", ops, "--out", res / "rom" / "rb.h5")
    cli(rom, "evaluate-rom", "--study-config", s, "--operators", ops, "--rb", res / "rom" / "rb.h5", "--test", test,
        "--out", res / "rom" / "rb_metrics.h5")
    return res


def test_the_parabolic_rb_opens_with_its_space_time_bound(heat):
    """rb of a transient study: the space-time energy bound at the final time equals evaluate-rom's (the same
    model calls on the same batch: bit for bit) and holds against the FOM test trajectories' errors."""
    model = romflow.open(heat).model("rb")
    test = artefacts.read(heat / "snapshots" / "test.h5")
    m = artefacts.read(heat / "rom" / "rb_metrics.h5")
    with one_blas_thread():
        p = model.predict(test["mu"].values, fields=True)
    assert model.name == "rb:parabolic" and p.kind == "certified" and not p.outputs
    np.testing.assert_array_equal(p.field_error, m["parabolic_estimate_time"].values[:, -1])
    assert np.all(p.field_error >= m["parabolic_error_time"].values[:, -1])
    assert p.fields.shape == (4, test["u"].shape[-1])


# -- local bases and the adaptive hyper-reduced ROM ------------------------------------------------------------
@pytest.fixture(scope="module")
def nonlinear(tmp_path_factory):
    """results/nl/ of the nonlinear heat problem (mesh 10, 8 steps; 8 train / 4 test trajectories, SciPy
    Newton) with its clusters, local bases (two clusters of the angle clustering, an 8-unit MLP selector) and
    adaptive ROM at an out-of-box load (q0 = 170) and an in-box one. About 4 s."""
    from rom.cli import main as rom

    root = tmp_path_factory.mktemp("api_nonlinear")
    res = root / "results" / "nl"
    cfg = write_yaml(root / "cfg.yaml", {
        "name": "nl", "problem": {"name": "nonlinear_heat", "mesh": {"n": 10}, "dt": 0.002, "steps": 8},
        "design": {"method": "lhs", "train": {"size": 8, "seed": 41}, "test": {"size": 4, "seed": 42}},
        "simulate": {"chunk_size": 8, "backend": "scipy"},
        "local": {"enabled": True, "n_clusters": 2, "basis_size": 3, "max_modes": 6,
                  "dissimilarities": ["euclidean", "angle"], "restarts": 2, "dictionary": "angle",
                  "classifier_hidden": [8]},
        "adaptive_rom": {"enabled": True, "max_modes": 10, "mu": [[0.5, 0.7, 170.0], [0.3, 0.5, 80.0]]}})
    s, ops = simulated(res, cfg)
    train, test, clusters = res / "snapshots" / "train.h5", res / "snapshots" / "test.h5", res / "rom/local/clusters.h5"
    cli(rom, "cluster", "--study-config", s, "--operators", ops, "--train", train, "--out", clusters)
    cli(rom, "local-bases", "--study-config", s, "--operators", ops, "--train", train, "--test", test, "--clusters",
        clusters, "--out", res / "rom/local/local_bases.h5")
    cli(rom, "adaptive-rom", "--study-config", s, "--operators", ops, "--train", train, "--test", test, "--out",
        res / "rom/adaptive_rom.h5")
    return res


def test_local_and_adaptive_open_lazily_without_a_solver(nonlinear):
    """In a fresh interpreter: opening the study and both models reads their artefacts only (no scikit-learn,
    no ROM build, no solver module: those wait for predict); a static adaptive run builds the ROM but no
    full-order step (no solver module, no PETSc); a local prediction loads no scikit-learn either (its MLP
    selector is stored in local_bases.h5, not trained again). Timings printed; romflow.open is asserted
    under 0.5 s."""
    code = textwrap.dedent(f"""
        import json, sys, time
        import romflow
        t0 = time.perf_counter()
        study = romflow.open({str(nonlinear)!r})
        t1 = time.perf_counter()
        local = study.model("local")
        t2 = time.perf_counter()
        adaptive = study.model("adaptive")
        t3 = time.perf_counter()
        lazy = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "petsc4py", "mpi4py")
                      or m.startswith(("rom.hifi.solvers", "rom.models.adaptive")))
        p = adaptive.predict([0.3, 0.5, 80.0], enrich=False)
        t4 = time.perf_counter()
        c = local.predict([0.3, 0.5, 80.0]).cluster.tolist()
        t5 = time.perf_counter()
        solvers = sorted(m for m in sys.modules if m.split(".")[0] in ("petsc4py", "mpi4py")
                         or m.startswith("rom.hifi.solvers"))
        sklearn = sorted(m for m in sys.modules if m.split(".")[0] == "sklearn")
        print(json.dumps({{"lazy": lazy, "solvers": solvers, "sklearn": sklearn, "open_s": t1 - t0, "local_s": t2 - t1,
                          "adaptive_s": t3 - t2, "static_predict_s": t4 - t3, "local_predict_s": t5 - t4,
                          "fom_steps": p.fom_steps.tolist(), "cluster": c}}))
    """)
    out = subprocess.run([PYTHON, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    print(r)  # measured on the 2-core VM: open 0.08 s, local 0.6 s (xarray's import), adaptive 0.05 s
    assert r["lazy"] == [] and r["solvers"] == [] and r["fom_steps"] == [0] and r["cluster"][0] in (0, 1)
    assert r["sklearn"] == []  # the local selector is stored, not trained again
    assert r["open_s"] < 0.5


def test_local_selection_equals_the_stage_bit_for_bit(nonlinear, tmp_path):
    """model('local').predict selects, per test parameter, the clusters local_bases chose (the MLP the stage
    trained and the nearest medoid in mu, both loaded from local_bases.h5), also without clusters.h5 and
    test.h5; no error measure (kind 'none'); out-of-box parameters and fields=True refused in one line; a
    stored selector that disagrees with the stage's choices refused, and so is an artefact without it."""
    import shutil

    ref = artefacts.read(nonlinear / "rom/local/local_bases.h5")
    mu = artefacts.converged(artefacts.read(nonlinear / "snapshots/test.h5"))["mu"].values
    model = romflow.open(nonlinear).model("local")
    p = model.predict(mu)
    assert p.kind == "none" and p.outputs == {} and p.error == {} and np.isnan(p.field_error).all()
    np.testing.assert_array_equal(p.cluster, ref["test_cluster_mlp"].values)
    assert len(set(p.cluster.tolist())) == 2  # both clusters chosen: the comparison can fail
    model.selector = "nearest_medoid_mu"
    np.testing.assert_array_equal(model.predict(mu).cluster, ref["test_cluster_nearest_medoid_mu"].values)
    model.selector = "mlp"
    assert np.array_equal(model.predict(mu[2]).cluster, p.cluster[2:3])  # one query is a batch of one
    for c in (0, 1):
        B = model.basis(c)
        assert B.shape == (ref["n_modes"].values[c], ref.sizes["dof"]) and np.array_equal(B, ref["bases"].values[c, :len(B)])
    with pytest.raises(ValueError) as e:
        model.predict([0.3, 0.5, 130.0])
    assert one_line(e).startswith("local: q0 = 130 (query 0) is outside the trained range [40, 120]")
    assert model.predict([0.3, 0.5, 130.0], extrapolate=True).extrapolated.tolist() == [True]
    with pytest.raises(ValueError) as e:
        model.predict(mu, fields=True)
    assert "no online solver" in one_line(e)
    assert ref.attrs["selector_layers"] == 2 and ref["selector_W0"].shape == (3, 8)  # 3 parameters, 8 units
    np.testing.assert_array_equal(ref["test_mu"].values, mu)
    # The selectors come from local_bases.h5 alone: the same choices without clusters.h5 and test.h5.
    other = tmp_path / "nl"
    shutil.copytree(nonlinear, other)
    (other / "rom/local/clusters.h5").unlink()
    (other / "snapshots/test.h5").unlink()
    alone = romflow.open(other).model("local")
    np.testing.assert_array_equal(alone.predict(mu).cluster, ref["test_cluster_mlp"].values)
    alone.selector = "nearest_medoid_mu"
    np.testing.assert_array_equal(alone.predict(mu).cluster, ref["test_cluster_nearest_medoid_mu"].values)
    # The stage's choices are the check of the stored selectors: another choice is refused.
    flipped = ref.copy()
    flipped["test_cluster_mlp"] = 1 - ref["test_cluster_mlp"]
    flipped.to_netcdf(other / "rom/local/local_bases.h5", engine="h5netcdf")
    with pytest.raises(RuntimeError) as e:
        romflow.open(other).model("local").predict(mu)
    assert "the mlp selector stored in" in one_line(e) and "chooses other clusters" in one_line(e)
    # An artefact without the stored selector (written before the selectors were stored) is refused.
    ref.drop_vars(["selector_W1"]).to_netcdf(other / "rom/local/local_bases.h5", engine="h5netcdf")
    with pytest.raises(ValueError) as e:
        romflow.open(other).model("local")
    assert one_line(e).startswith("local: ") and "has no selector_W1; expected the artefact of the local_bases" in one_line(e)


def test_adaptive_rom_equals_the_stage_bit_for_bit(nonlinear):
    """model('adaptive').predict at the stage's parameters (one outside the box: extrapolate=True) runs the
    stage's ROM build and adaptive loop: the indicator of every step, the enrichment events, the basis sizes
    and the FOM steps equal adaptive_rom.h5 bit for bit, and so do the relative errors of its trajectory
    against the FOM's (the stage's relative_errors on the same arrays); enrich=False gives the static run.
    The indicator is labelled 'indicator' (not a bound); outside the box refused in one line."""
    from rom.hifi import registry
    from rom.hifi.discretization.operators import Operators
    from rom.hifi.solvers.solve import FullOrderModel
    from rom.models.adaptive import relative_errors

    ref = artefacts.read(nonlinear / "rom/adaptive_rom.h5")
    mu = ref["mu"].values
    model = romflow.open(nonlinear).model("adaptive")
    with pytest.raises(ValueError) as e:
        model.predict(mu)
    assert one_line(e).startswith("adaptive: q0 = 170 (query 0) is outside the trained range [40, 120]")
    p = model.predict(mu, extrapolate=True, fields=True)
    assert p.kind == "indicator" and p.extrapolated.tolist() == [True, False] and p.outputs == {}
    for name, var in (("indicator", "indicator_adaptive"), ("enriched", "enriched"), ("basis_size", "basis_size")):
        np.testing.assert_array_equal(p.history[name], ref[var].values)
    np.testing.assert_array_equal(p.fom_steps, ref["fom_steps"].values)
    assert np.all(p.fom_steps > 0)  # both trajectories enriched: the loop's FOM path is exercised
    np.testing.assert_array_equal(p.field_error, ref["indicator_adaptive"].values[:, -1])
    static = model.predict(mu, extrapolate=True, enrich=False)
    np.testing.assert_array_equal(static.history["indicator"], ref["indicator_static"].values)
    assert static.fom_steps.tolist() == [0, 0]
    # The trajectories against FOM references solved as the stage solves them.
    cfg = romflow.open(nonlinear).config
    problem = registry.make_problem(cfg["problem"])
    X = Operators.from_dataset(artefacts.read(nonlinear / "fom/operators.h5")).X
    fom = FullOrderModel(problem, "scipy", cfg["simulate"]["petsc_options"])
    states = model.predict_trajectory(mu, extrapolate=True)
    np.testing.assert_array_equal(states[:, -1], p.fields)
    for i, m in enumerate(mu):
        np.testing.assert_array_equal(relative_errors(states[i], fom.solve_trajectory(m).u, X),
                                      ref["error_adaptive"].values[i])
    assert np.isclose(p.norm[1], np.sqrt(p.fields[1] @ (X @ p.fields[1])), rtol=1e-14)


def test_predict_command_writes_the_adaptive_roms_fom_steps(nonlinear, tmp_path):
    """`python -m rom predict --model adaptive` (in process): the indicator as field_error, kind indicator,
    and the FOM steps per query, as the API gives them."""
    import h5py

    from rom.cli import main as rom

    design, out = tmp_path / "d.csv", tmp_path / "p.h5"
    design.write_text("q0,x_source,y_source\n80.0,0.3,0.5\n60.0,0.25,0.4\n")
    cli(rom, "predict", "--study", nonlinear, "--model", "adaptive", "--design", design, "--out", out)
    p = romflow.open(nonlinear).model("adaptive").predict([[0.3, 0.5, 80.0], [0.25, 0.4, 60.0]])
    with h5py.File(out) as h5:
        assert h5.attrs["kind"] == "indicator"
        np.testing.assert_array_equal(h5["fom_steps"][()], p.fom_steps)
        np.testing.assert_array_equal(h5["field_error"][()], p.field_error)


# -- python -m rom export -------------------------------------------------------------------------------------
def test_export_command_writes_the_onnx_of_a_streamed_nn(tiny, tmp_path, capsys):
    """`python -m rom export --format onnx` (in process) on the tiny study's nn_fifo writes the graph export_onnx
    writes (onnxruntime gives the same numbers on 1000 inputs), checked against torch; an unknown model, a model
    that is not a network and an unwritable path end in one line on stderr, exit status 2, nothing written."""
    import onnxruntime

    from rom.cli import main as rom
    from surrogates.onnx_export import export_onnx

    out = tmp_path / "sub" / "nn.onnx"
    args = ["export", "--study", str(tiny), "--format", "onnx"]
    assert rom(args + ["--model", "nn_fifo", "--out", str(out)]) == 0
    assert "onnxruntime vs torch on 256 inputs: max |difference|" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == ["nn.onnx"]  # no temporary file left
    rng = np.random.default_rng(3)
    raw = np.column_stack([rng.uniform(0.1, 1.0, (1000, 4)), rng.random(1000)])
    lib = export_onnx(tiny / "surrogate" / "online_fifo.pt", tmp_path / "lib.onnx")
    got, want = (onnxruntime.InferenceSession(str(f), providers=["CPUExecutionProvider"]).run(None, {"mu_t": raw})[0]
                 for f in (out, lib))
    assert got.shape == (1000, 289)
    np.testing.assert_array_equal(got, want)
    blocked = tmp_path / "file"
    blocked.write_text("")
    for model, target, match in (("nn_none", out, "--model nn_none: no such model"),
                                 ("rb", out, "--model rb: not a neural surrogate; expected one of the study's neural "
                                             "surrogates: nn_fifo"),
                                 ("nn_fifo", blocked / "x.onnx", f"--out {blocked / 'x.onnx'}: cannot write there")):
        assert rom(args + ["--model", model, "--out", str(target)]) == 2, model
        err = capsys.readouterr().err
        assert match in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "lib.onnx", "sub"]
