"""The contracts between the layers: every built-in problem meets the capabilities it declares, a stage
whose problem lacks a capability is refused at validation, every rule's rerun trigger is the digest of
the sections its stage declares, the packages have no import cycle, and the rooms of rom.hifi keep their layers."""
import copy
import tempfile
from pathlib import Path

import numpy as np
import pytest

import imports
import test_oracles
from conftest import ROOT, tiny_study, write_yaml
from rom import config, pipeline
from rom.hifi import capabilities as cap
from rom.hifi.discretization import fem
from rom.hifi.registry import PROBLEMS
from rom.hifi.solvers.shapes import solve_geometry

EPS = np.finfo(float).eps
# Small instances of every built-in problem (its declared arguments' defaults otherwise).
# Problems on a user's mesh make it at validation (mesh.generate); `make` declares no parameters section,
# so their coefficients here are numbers (tests/test_declared.py and tests/test_oracles.py cover the parameters).
# One directory per process (a copy of the suite running beside this one, or another xdist worker, writes
# its own meshes); kept for the module's life and removed at exit.
_MESHES_DIR = tempfile.TemporaryDirectory(prefix="romflow-contracts-")
_MESHES = Path(_MESHES_DIR.name)


def _mesh(script, size):
    return {"file": str(_MESHES / f"{script}_{size}.msh"),
            "generate": f"{{python}} {{root}}/examples/meshes/{script}.py {{file}} --size {size}"}


SMALL = {"thermal_block": {"mesh": {"n": 8}, "blocks": [2, 3]}, "heat": {"mesh": {"n": 8}, "steps": 3},
         "nonaffine_diffusion": {"mesh": {"n": 6}}, "nonlinear_heat": {"mesh": {"n": 8}, "steps": 3},
         "tensile_plate": {"mesh": {"n": 6}},
         "diffusion": {"mesh": _mesh("heat_sink", 0.006), "conductivity": {"base": 2.0, "pad": 4.0, "fins": 1.5},
                       "source": {"base": 1.0}, "neumann": {"heater": 3.0},
                       "robin": {"convective": {"h": 5.0, "u_inf": 0.5}}},
         "elasticity": {"mesh": _mesh("bracket", 0.02), "young": {"plate": 2.0, "ring": 1.0},
                        "poisson": {"plate": 0.3, "ring": 0.4}, "fixed": {"clamp": [0.0, 0.0]},
                        "traction": {"load": [0.0, -1.0]}},
         "viscoplastic": {"mesh": _mesh("cooled_plate", 4.0), "steps": 3,
                          "material": {"plate": {"young": [[20.0, 200e3], [1000.0, 150e3]], "poisson": 0.3,
                                                 "expansion": 1.4e-5, "hardening": 15e3, "norton_K": 1500.0,
                                                 "norton_n": [[800.0, 8.0], [1000.0, 5.0]]}},
                          "temperature": {"base": 880.0, "reference": 880.0,
                                          "hot_spot": {"center": [30.0, 12.0, 2.0], "amplitude": 100.0, "width": 8.0}},
                          "fixed": {"root": [0.0, 0.0, 0.0]}, "traction": {"tip": [120.0, 0.0, 0.0]},
                          "cycle": {"shape": "sine", "period": 4.0}},
         "external": {"mesh": _mesh("square", 0.25), "matrices": True,
                      "command": "{python} {root}/examples/blackbox/poisson.py --mu 2.0,0.5 --mesh {mesh} --out {out} "
                                 "--operator {operator} --rhs {rhs}"}}


def make(name):
    spec = config.validate({"name": "c", "problem": {"name": name, **SMALL[name]}})["problem"]
    cls = PROBLEMS[name]
    return cls, spec, cls.from_arguments({k: v for k, v in spec.items() if k != "name"})


def draw(space, n, seed):
    lo, hi = space.bounds.T
    return lo + (hi - lo) * np.random.default_rng(seed).random((n, space.dim))


def test_no_import_cycle():
    assert imports.cycles() == []


def test_hifi_layers():
    """discretization and problems never import petsc4py or mpi4py; problems import no solver, no solve
    sequence and no other family; solvers work through the contracts (no problem module); nothing in
    rom.hifi reads another object's private member."""
    assert imports.layer_violations() == []


@pytest.mark.parametrize("name", sorted(SMALL))
def test_builtin_problem_meets_its_declared_capabilities(name):
    cls, spec, p = make(name)
    cap.check_problem_class(cls)
    cap.check_problem_instance(p)
    space = cls.parameter_space(spec)
    # Parameters: readable without a mesh, a valid box inside the admissible interval.
    assert len(set(space.names)) == space.dim and space.bounds.shape == (space.dim, 2)
    assert np.all(space.bounds[:, 0] < space.bounds[:, 1])
    assert np.all(space.admissible[:, 0] < space.bounds[:, 0]) and np.all(space.bounds[:, 1] < space.admissible[:, 1])
    assert list(p.parameter_names) == list(space.names)
    mu = draw(space, 3, 1)
    caps = cls.capabilities
    if cap.MESH in caps:
        pattern = fem.Pattern.build(p.mesh)
        for values in (p.energy_product(pattern), p.mass_product(pattern)):
            P = pattern.to_scipy(values)
            assert abs(P - P.T).max() <= 8 * EPS * abs(P).max()  # symmetric to round-off
            np.linalg.cholesky(P.toarray())  # positive definite
        assert p.full_field(mu[0], np.zeros(p.mesh.n_dofs)).shape == (p.mesh.n_nodes,)
    if cap.STATIONARY in caps or (cap.TRANSIENT in caps and cap.NONLINEAR not in caps):
        assert p.operator_values(mu[0], pattern).shape == (pattern.nnz,)
        assert p.rhs(mu[0], pattern).shape == (pattern.n_rows,)
    if cap.AFFINE in caps:
        A_q, f_p = p.operator_terms(pattern), p.rhs_terms(pattern)
        theta, phi = p.theta(mu), p.phi(mu)
        assert theta.shape == (3, len(A_q)) and phi.shape == (3, len(f_p))
        # A(mu) from the affine terms against scikit-fem's assembly (tests/test_oracles.py, which checks
        # each term and the loads): entrywise on the free dofs, a few ulps per element contribution.
        o = test_oracles.oracle_for(name, p)
        direct = test_oracles.oracle_operator(name, p, mu[1], o)
        test_oracles.check_matrix(pattern, theta[1] @ A_q, direct, o.valence + o.facet_valence, f"{name} A(mu)")
        if name in DIRECT:  # the scipy assembly of tests/test_declared.py: a second, independent oracle
            direct = DIRECT[name](p, mu[1], pattern)
            np.testing.assert_allclose(theta[1] @ A_q, direct, rtol=0, atol=16 * EPS * np.abs(direct).max())
    if cap.ENTRY_PROBE in caps:
        slots = np.random.default_rng(2).choice(pattern.nnz, 12, replace=False)
        A = np.stack([p.operator_values(m, pattern) for m in mu])
        np.testing.assert_allclose(p.entry_probe(pattern, slots)(mu), A[:, slots], rtol=0, atol=16 * EPS * np.abs(A).max())
    if cap.COEFFICIENT_EIM in caps:
        # With the unit collateral basis (one term per point) the EIM-affine operator is exact.
        npts = len(p.eim_points)
        terms = p.eim_operator_terms(pattern, np.eye(npts))
        beta = p.g(p.eim_points, mu)
        for i in range(3):
            A = p.operator_values(mu[i], pattern)
            np.testing.assert_allclose(p.eim_theta(mu[i:i + 1], beta[i:i + 1])[0] @ terms, A, rtol=0,
                                       atol=64 * EPS * np.abs(A).max())
    if cap.COERCIVITY_BOUND in caps:
        X = pattern.to_scipy(p.energy_product(pattern)).toarray()
        for m in mu:
            A = pattern.to_scipy(p.operator_values(m, pattern)).toarray()
            L = np.linalg.cholesky(X)
            Li = np.linalg.inv(L)
            alpha = np.linalg.eigvalsh(Li @ (0.5 * (A + A.T)) @ Li.T).min()
            assert p.coercivity_lower_bound(m[None])[0] <= alpha * (1 + 1e-10)
    if cap.TRANSIENT in caps:
        assert len(p.times) == p.steps + 1 and p.times[0] == 0.0
        assert p.initial_state(mu[0], p.mesh.n_dofs).shape == (p.mesh.n_dofs,)
    if cap.NONLINEAR in caps:
        # The element form: shapes, and the tangent against central differences of the element residual
        # (O(h^2) truncation and eps |r| / h rounding: 1e-6 of the tangent's scale holds both).
        dofs = p.element_dofs
        elems = np.arange(len(dofs))
        k = dofs.shape[1]
        assert p.element_weights.shape == (len(dofs),) and np.all(p.element_weights > 0)
        z0 = p.initial_internal(len(elems))
        assert z0.shape == (len(elems), p.n_internal)
        rng = np.random.default_rng(3)
        scale = 1e-3 if p.n_internal else 1.0  # a strain of 1e-3 for a structure, unit temperatures for heat
        ue_prev = scale * rng.random((len(elems), k))
        ue = ue_prev + scale * rng.random((len(elems), k))
        re, z, J = p.element_residual(elems, ue, ue_prev, z0, mu[0], p.times[1], tangent=True)
        assert re.shape == (len(elems), k) and z.shape == z0.shape and J.shape == (len(elems), k, k)
        h = 1e-6 * scale
        for j in range(k):
            d = np.zeros_like(ue)
            d[:, j] = h
            fd = (p.element_residual(elems, ue + d, ue_prev, z0, mu[0], p.times[1])[0]
                  - p.element_residual(elems, ue - d, ue_prev, z0, mu[0], p.times[1])[0]) / (2 * h)
            np.testing.assert_allclose(J[:, :, j], fd, rtol=1e-6, atol=1e-6 * np.abs(J).max())
        F = p.external_terms(pattern)
        assert F.shape == (len(p.external_coefficients(mu[0], p.times[1])), pattern.n_rows)
        assert p.dual_field(elems, ue, z, mu[0]).shape[0] == len(elems)
    if cap.GEOMETRY_SOLVER in caps:
        mesh = p.geometry(7)
        sol = solve_geometry(p, mesh, mu[0], "scipy")
        assert sol.converged and sol.displacement.shape == (mesh.n_nodes, 2)
        assert set(cls.output_fields) == {"u_x", "u_y", "von_mises"}
        assert np.isfinite(sol.compliance) and sol.compliance > 0


def _on_pattern(A, pattern):
    """CSR values of a scipy matrix on the free dofs at the pattern's positions."""
    rows = np.repeat(np.arange(pattern.row_start, pattern.row_stop), np.diff(pattern.indptr))
    return np.asarray(A.tocsr()[rows, pattern.indices]).ravel()


def _declared_diffusion(p, mu, pattern):
    from test_declared import direct_diffusion

    return _on_pattern(direct_diffusion(p, mu)[0], pattern)


def _declared_elasticity(p, mu, pattern):
    from test_declared import direct_elasticity

    return _on_pattern(direct_elasticity(p, mu)[0], pattern)


DIRECT = {"diffusion": _declared_diffusion, "elasticity": _declared_elasticity}


def test_stage_needing_a_missing_capability_is_refused_in_one_line():
    # heat is transient and affine (parabolic RB); the nonlinear heat problem has no reduced basis.
    study = {"name": "h", "problem": {"name": "nonlinear_heat", "mesh": {"n": 8}}, "rb": {"enabled": True}}
    with pytest.raises(config.ConfigError) as err:
        config.validate(study, "h.yaml")
    msg = str(err.value)
    assert "\n" not in msg
    assert "stage reduced_basis needs the problem capability 'stationary'" in msg and "problem nonlinear_heat" in msg


def test_every_declared_stage_has_a_known_section_and_capability():
    sections = set(config.schema()["properties"])
    for stage in pipeline.STAGES.values():
        assert set(stage.sections) <= sections, stage.name
        assert stage.needs.names <= set(cap.CAPABILITIES), stage.name
        assert all(n.names <= set(cap.CAPABILITIES) for _, n, _ in stage.setting_needs), stage.name


@pytest.mark.pipeline
def test_rule_triggers_are_the_digest_of_the_declared_sections(tmp_path):
    from snakemake.api import SnakemakeApi
    from snakemake.iocontainers import Wildcards
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    study = tiny_study(rb={"enabled": True}, gp={"enabled": True})
    cfg = write_yaml(tmp_path / "cfg.yaml", study)
    resolved = config.validate(copy.deepcopy(study), str(cfg), tmp_path)
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(configfiles=[cfg]),
                          snakefile=ROOT / "Snakefile", workdir=tmp_path, storage_settings=StorageSettings())
        rules = {r.name: r for r in wf._workflow.rules}  # the parsed workflow (Snakemake's own object)
    checked = 0
    for name, stage in pipeline.STAGES.items():
        if name not in rules:
            continue
        params = rules[name].params
        assert ("trigger" in params.keys()) == bool(stage.sections), name
        if stage.sections:
            value = params["trigger"](Wildcards(fromdict={"study": "tiny"}))
            assert value == config.digest([resolved.get(s) for s in stage.sections]), name
            checked += 1
    assert checked >= 15
