"""PDEs declared in the study file on gmsh meshes written here: manufactured radial solutions with every
boundary kind (L2 order 2, H1 order 1 in 2D and 3D), elasticity patch tests (2D plane stress and
strain, 3D), the affine terms against an independent assembly, a certified RB on a user mesh, and the
one-line refusals of a bad declaration."""
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import gmsh_meshes
from gmsh_meshes import R1, R2
from rom import config
from rom.hifi.discretization import fem
from rom.hifi.problems.declared import Diffusion, Elasticity, TransientDiffusion
from rom.hifi.solvers import petsc

EPS = np.finfo(float).eps
K, S, H, U_INF, G, Q = 2.0, 3.0, 1.5, 0.2, 1.0, 0.7


def radial(dim, case):
    """u(r) = -S r^2 / (2 dim K) + A phi(r) + B (phi = ln r in 2D, -1/r in 3D) solving -K Lap u = S with
    Robin -K u' = H (u - U_INF) at r = R2 and, at r = R1, u = G (case dirichlet) or the inflow flux
    -K u' = Q (case neumann; the outward normal is -e_r there)."""
    phi = np.log if dim == 2 else (lambda r: -1 / r)
    dphi = (lambda r: 1 / r) if dim == 2 else (lambda r: 1 / r**2)
    u0, du0 = (lambda r: -S * r**2 / (2 * dim * K)), (lambda r: -S * r / (dim * K))
    rows = [[-K * dphi(R2) - H * phi(R2), -H]]
    rhs = [K * du0(R2) + H * (u0(R2) - U_INF)]
    if case == "dirichlet":
        rows.append([phi(R1), 1.0]), rhs.append(G - u0(R1))
    else:
        rows.append([-K * dphi(R1), 0.0]), rhs.append(Q + K * du0(R1))
    A, B = np.linalg.solve(rows, rhs)

    def u(*x):
        r = np.sqrt(sum(c * c for c in x))
        return u0(r) + A * phi(r) + B

    def grad(*x):
        r = np.sqrt(sum(c * c for c in x))
        return tuple((du0(r) + A * dphi(r)) * c / r for c in x)

    return u, grad


def declaration(path, case):
    args = {"mesh": {"file": str(path)}, "conductivity": {"shell": "k"}, "source": {"shell": S},
            "robin": {"outer": {"h": H, "u_inf": "u_inf"}}, "neumann": {"sides": 0.0}}
    if case == "dirichlet":
        args["dirichlet"] = {"inner": "g"}
    else:
        args["neumann"]["inner"] = Q
    return args


def solve(problem, mu):
    """CG + GAMG to rtol 1e-12 (PETSc, serial)."""
    pattern = fem.Pattern.build(problem.mesh)
    PETSc = petsc.init()
    solver = petsc.LinearSolver(PETSc.COMM_SELF, problem.mesh.n_dofs, 0, problem.mesh.n_dofs, pattern.indptr,
                                pattern.indices, {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-12})
    solver.ksp.setType("cg")
    solver.ksp.getPC().setType("gamg")
    solver.ksp.setTolerances(rtol=1e-12)
    solver.set_values(problem.operator_values(mu, pattern))
    u, info = solver.solve(problem.rhs(mu, pattern))
    solver.destroy()
    assert info.converged, info.reason
    return u


def errors(path, dim, case):
    p = Diffusion(declaration(path, case))
    mu = np.array([{"k": K, "u_inf": U_INF, "g": G}[n] for n in p.parameter_names])
    u, grad = radial(dim, case)
    return fem.l2_h1_errors(p.mesh, p.full_field(mu, solve(p, mu)), u, grad), len(p.mesh.cells)


@pytest.mark.parametrize("case", ["dirichlet", "neumann"])
def test_manufactured_solution_2d_orders(tmp_path, case):
    """Uniform refinement of a quarter annulus: every halving of h divides the L2 error by 4 and the
    H1 error by 2 (rates within 0.1 of 2 and 1)."""
    paths = gmsh_meshes.sector(2, 0.15, tmp_path / "annulus.msh", refinements=3)
    e = np.array([errors(p, 2, case)[0] for p in paths])
    rates = np.log2(e[:-1] / e[1:])
    assert np.all(np.abs(rates[:, 0] - 2) < 0.1), rates
    assert np.all(np.abs(rates[:, 1] - 1) < 0.1), rates


@pytest.fixture(scope="module")
def shells(tmp_path_factory):
    d = tmp_path_factory.mktemp("shells")
    return [gmsh_meshes.sector(3, h, d / f"shell_{h}.msh")[0] for h in (0.1, 0.07, 0.05, 0.035)]


@pytest.mark.parametrize("case", ["dirichlet", "neumann"])
def test_manufactured_solution_3d_orders(shells, case):
    """Octant of a spherical shell, meshes made independently at four sizes (gmsh's uniform refinement of
    tetrahedra degrades their shape): the orders are the least-squares slopes against h = n_cells^(-1/3)."""
    out = [errors(p, 3, case) for p in shells]
    e = np.array([o[0] for o in out])
    h = np.array([o[1] for o in out], dtype=float) ** (-1 / 3)
    slopes = [np.polyfit(np.log(h), np.log(e[:, j]), 1)[0] for j in range(2)]
    assert abs(slopes[0] - 2) < 0.1 and abs(slopes[1] - 1) < 0.1, slopes


# -- elasticity patch tests: a uniform stress state is reproduced exactly ---------------------------------
def uniaxial(dim, plane, E, nu, sigma, x):
    """Displacement of the uniaxial stress (or plane-strain) state sigma_xx = sigma with the planes x = 0,
    y = 0 (, z = 0) held in their normal direction."""
    if dim == 2 and plane == "strain":
        ex, ey = (1 - nu * nu) * sigma / E, -nu * (1 + nu) * sigma / E
        return np.column_stack([ex * x[:, 0], ey * x[:, 1]])
    ex, ey = sigma / E, -nu * sigma / E
    return np.column_stack([ex * x[:, 0]] + [ey * x[:, i] for i in range(1, dim)])


@pytest.mark.parametrize("dim, plane", [(2, "stress"), (2, "strain"), (3, None)])
@pytest.mark.parametrize("drive", ["traction", "displacement"])
def test_elasticity_patch_test(tmp_path, dim, plane, drive):
    path = gmsh_meshes.box(dim, 0.3 if dim == 3 else 0.2, tmp_path / "box.msh", regions=2)
    E, nu, sigma = 3.0, 0.3, 0.5
    fixed = {"x0": [0.0] + [None] * (dim - 1), "y0": [None, 0.0] + [None] * (dim - 2)}
    if dim == 3:
        fixed["z0"] = [None, None, 0.0]
    args = {"mesh": {"file": str(path)}, "young": {"left": "E", "right": "E"}, "poisson": {"left": nu, "right": nu}}
    if plane:
        args["plane"] = plane
    exact = uniaxial(dim, plane, E, nu, sigma, np.eye(dim))
    if drive == "traction":
        args["traction"] = {"x1": ["s"] + [0.0] * (dim - 1)}
    else:  # the face x = 1 displaced by exact u_x(1): the lifting of a parametrized fixed value
        fixed["x1"] = ["s"] + [None] * (dim - 1)
    args["fixed"] = fixed
    p = Elasticity(args)
    mu = np.array([E, sigma if drive == "traction" else exact[0, 0]])
    pattern = fem.Pattern.build(p.mesh)
    A = pattern.to_scipy(p.operator_values(mu, pattern)).tocsc()
    u = spla.spsolve(A, p.rhs(mu, pattern))
    want = uniaxial(dim, plane, E, nu, sigma, p.mesh.nodes)
    got = p.displacement(mu, u)
    # A direct solve: round-off of the condition number (~1e4 on these meshes) times eps.
    assert np.abs(got - want).max() < 1e6 * EPS * np.abs(want).max()


# -- the affine terms against an independent assembly ----------------------------------------------------
def p1_gradients_by_inverse(x):
    """Barycentric gradients of simplices x (m, d + 1, d) from the inverse of [1 x] (not fem's formulas)."""
    m, k, d = x.shape
    V = np.concatenate([np.ones((m, k, 1)), x], axis=2)
    return np.linalg.inv(V)[:, 1:, :].transpose(0, 2, 1), np.abs(np.linalg.det(V)) / (1.0 if d == 1 else 2.0 if d == 2 else 6.0)


def coo(n, conn, local):
    k = conn.shape[1]
    return sp.csr_matrix((local.ravel(), (np.repeat(conn, k, 1).ravel(), np.tile(conn, (1, k)).ravel())), shape=(n, n))


def facet_mass(x):
    d = x.shape[1]
    if d == 2:
        meas = np.linalg.norm(x[:, 1] - x[:, 0], axis=1)
    else:
        meas = 0.5 * np.linalg.norm(np.cross(x[:, 1] - x[:, 0], x[:, 2] - x[:, 0]), axis=1)
    return meas, meas[:, None, None] * (np.ones((d, d)) + np.eye(d)) / (d * (d + 1))


def direct_diffusion(p, mu, transient=None):
    """A(mu) and f(mu) on the free dofs, assembled on all nodes with scipy and restricted."""
    mf, n = p.file, p.mesh.n_nodes
    val = dict(zip(p.parameter_names, mu))
    v = lambda x: val[x] if isinstance(x, str) else float(x)  # noqa: E731
    a = p.args
    g, vol = p1_gradients_by_inverse(mf.nodes[mf.cells])
    k = np.array([v(a["conductivity"][r]) for r in mf.regions])[mf.cell_region]
    A = coo(n, mf.cells, np.einsum("e,eik,ejk->eij", k * vol, g, g))
    f = np.zeros(n)
    for r, s in a.get("source", {}).items():
        c = mf.region_cells(r)
        np.add.at(f, mf.cells[c].ravel(), np.repeat(vol[c] * v(s) / mf.cells.shape[1], mf.cells.shape[1]))
    for grp, q in a.get("neumann", {}).items():
        fa = mf.group_facets(grp)
        meas, _ = facet_mass(mf.nodes[fa])
        np.add.at(f, fa.ravel(), np.repeat(meas * v(q) / fa.shape[1], fa.shape[1]))
    for grp, r in a.get("robin", {}).items():
        fa = mf.group_facets(grp)
        meas, Mf = facet_mass(mf.nodes[fa])
        A = A + coo(n, fa, v(r["h"]) * Mf)
        np.add.at(f, fa.ravel(), np.repeat(meas * v(r["h"]) * v(r.get("u_inf", 0.0)) / fa.shape[1], fa.shape[1]))
    gD = np.zeros(n)
    count = np.zeros(n)
    for grp, value in a.get("dirichlet", {}).items():
        nodes = np.unique(mf.group_facets(grp))
        gD[nodes] += v(value)
        count[nodes] += 1
    fixed = count > 0
    gD[fixed] /= count[fixed]
    free = p.mesh.dof_node
    rhs = f[free] - A[free][:, fixed] @ gD[fixed]
    if transient is not None:
        Mc = coo(n, mf.cells, vol[:, None, None] * (np.ones((4, 4)) + np.eye(4)) / 20)
        return (Mc + transient * A)[free][:, free], transient * rhs
    return A[free][:, free], rhs


def declared_3d(path, **extra):
    return {"mesh": {"file": str(path)}, "conductivity": {"left": "k_l", "right": 4.0},
            "source": {"left": "s", "right": 1.5}, "dirichlet": {"x0": "g", "y0": 0.25},
            "neumann": {"x1": "q", "z0": -0.5}, "robin": {"z1": {"h": "h", "u_inf": "t_air"}, "y1": {"h": 2.0}},
            **extra}


def test_declared_affine_terms_equal_a_direct_assembly(tmp_path):
    path = gmsh_meshes.box(3, 0.3, tmp_path / "box.msh", regions=2)
    p = Diffusion(declared_3d(path))
    assert p.parameter_names == ["k_l", "s", "g", "q", "h", "t_air"]
    mu = np.random.default_rng(5).uniform(0.5, 2.0, len(p.parameter_names))
    pattern = fem.Pattern.build(p.mesh)
    A, f = direct_diffusion(p, mu)
    # theta and phi separate the parameters: one operator term per parameter of A plus the constant.
    assert p.n_terms == 3 and p.theta(mu[None]).shape == (1, 3)
    tol = 64 * EPS
    np.testing.assert_allclose(pattern.to_scipy(p.operator_values(mu, pattern)).toarray(), A.toarray(), rtol=0,
                               atol=tol * abs(A).max())
    np.testing.assert_allclose(p.rhs(mu, pattern), f, rtol=0, atol=tol * np.abs(f).max())
    # The transient form: the step matrix M + dt A(mu) and dt f(mu).
    pt = TransientDiffusion(declared_3d(path, transient={"dt": 0.1, "steps": 3, "initial": "g"}))
    At, ft = direct_diffusion(pt, mu, transient=0.1)
    np.testing.assert_allclose(pattern.to_scipy(pt.operator_values(mu, pattern)).toarray(), At.toarray(), rtol=0,
                               atol=tol * abs(At).max())
    np.testing.assert_allclose(pt.rhs(mu, pattern), ft, rtol=0, atol=tol * np.abs(ft).max())
    assert np.all(pt.initial_state(mu, 5) == mu[2])
    # The nodal field carries the Dirichlet data: g on x = 0, 0.25 on y = 0 away from x = 0, their mean
    # on the shared edge.
    full = p.full_field(mu, np.zeros(p.mesh.n_dofs))
    x = p.mesh.nodes
    on_x0, on_y0 = np.isclose(x[:, 0], 0), np.isclose(x[:, 1], 0)
    np.testing.assert_allclose(full[on_x0 & ~on_y0], mu[2])
    np.testing.assert_allclose(full[on_y0 & ~on_x0], 0.25)
    np.testing.assert_allclose(full[on_x0 & on_y0], (mu[2] + 0.25) / 2)


def test_transient_declaration_steps_like_an_independent_implicit_euler(tmp_path):
    """The FOM's trajectory of the transient form: (M + dt A) u^{k+1} = M u^k + dt f from u^0 = initial, with
    A, f, M assembled independently (scipy) on all nodes."""
    from rom.hifi.solvers.solve import FullOrderModel

    path = gmsh_meshes.box(3, 0.35, tmp_path / "box.msh", regions=2)
    dt, steps = 0.05, 4
    p = TransientDiffusion(declared_3d(path, transient={"dt": dt, "steps": steps, "initial": "g"}))
    mu = np.random.default_rng(11).uniform(0.5, 2.0, len(p.parameter_names))
    fom = FullOrderModel(p, "petsc", {"ksp_type": "cg", "pc_type": "gamg", "ksp_rtol": 1e-13})
    s = fom.solve_trajectory(mu)
    assert s.converged and s.u.shape == (steps + 1, p.mesh.n_dofs)
    step, rhs = direct_diffusion(p, mu, transient=dt)
    mf, free = p.file, p.mesh.dof_node
    _, vol = p1_gradients_by_inverse(mf.nodes[mf.cells])
    M = coo(p.mesh.n_nodes, mf.cells, vol[:, None, None] * (np.ones((4, 4)) + np.eye(4)) / 20)[free][:, free]
    u = np.full(p.mesh.n_dofs, mu[2])
    lu = spla.splu(step.tocsc())
    for k in range(1, steps + 1):
        u = lu.solve(M @ u + rhs)
        # CG to rtol 1e-13 per step: the difference stays at that level times the step count.
        assert np.linalg.norm(s.u[k] - u) < 1e-10 * np.linalg.norm(u), k


def direct_elasticity(p, mu):
    mf, n, dim = p.file, p.mesh.n_nodes, p.mesh.dim
    val = dict(zip(p.parameter_names, mu))
    v = lambda x: val[x] if isinstance(x, str) else float(x)  # noqa: E731
    g, vol = p1_gradients_by_inverse(mf.nodes[mf.cells])
    m, k = mf.cells.shape
    # Small-strain energy with Lame constants: eps : C : eps assembled entry by entry (no Voigt matrices).
    A = sp.csr_matrix((n * dim, n * dim))
    for r in mf.regions:
        c = mf.region_cells(r)
        E, nu = v(p.args["young"][r]), float(p.args["poisson"][r])
        lam, mu_ = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
        if dim == 2 and p.args.get("plane", "stress") == "stress":
            lam = 2 * lam * mu_ / (lam + 2 * mu_)
        gg = g[c]
        # K[a i, b j] = vol (lam g_a,i g_b,j + mu (g_a,j g_b,i + delta_ij g_a . g_b))
        Ke = (lam * np.einsum("eai,ebj->eaibj", gg, gg) + mu_ * np.einsum("eaj,ebi->eaibj", gg, gg)
              + mu_ * np.einsum("eak,ebk,ij->eaibj", gg, gg, np.eye(dim))) * vol[c][:, None, None, None, None]
        conn = (mf.cells[c][:, :, None] * dim + np.arange(dim)).reshape(len(c), -1)
        A = A + coo(n * dim, conn, Ke.reshape(len(c), k * dim, k * dim))
    f = np.zeros(n * dim)
    for r, b in p.args.get("body_force", {}).items():
        c = mf.region_cells(r)
        for i, bi in enumerate(b):
            np.add.at(f, (mf.cells[c] * dim + i).ravel(), np.repeat(vol[c] * v(bi) / k, k))
    for grp, t in p.args.get("traction", {}).items():
        fa = mf.group_facets(grp)
        meas, _ = facet_mass(mf.nodes[fa])
        for i, ti in enumerate(t):
            np.add.at(f, (fa * dim + i).ravel(), np.repeat(meas * v(ti) / fa.shape[1], fa.shape[1]))
    gD, count = np.zeros(n * dim), np.zeros(n * dim)
    for grp, comps in p.args["fixed"].items():
        nodes = np.unique(mf.group_facets(grp))
        for i, ci in enumerate(comps):
            if ci is not None:
                gD[nodes * dim + i] += v(ci)
                count[nodes * dim + i] += 1
    fixed = count > 0
    gD[fixed] /= count[fixed]
    free = p.mesh.dof_node * dim + p.mesh.dof_component
    return A[free][:, free], f[free] - A[free][:, fixed] @ gD[fixed]


@pytest.mark.parametrize("dim, plane", [(2, "strain"), (3, None)])
def test_declared_elasticity_terms_equal_a_direct_assembly(tmp_path, dim, plane):
    path = gmsh_meshes.box(dim, 0.3, tmp_path / "box.msh", regions=2)
    z = [0.0] * (dim - 2)
    args = {"mesh": {"file": str(path)}, "young": {"left": "E_l", "right": 7.0}, "poisson": {"left": 0.25, "right": 0.4},
            "body_force": {"left": ["b", -1.0] + z}, "traction": {"x1": [0.5, "t"] + z},
            "fixed": {"x0": [0.0, "d"] + z, "y0": [None, 0.0] + [None] * (dim - 2)}}
    if plane:
        args["plane"] = plane
    p = Elasticity(args)
    mu = np.random.default_rng(7).uniform(0.5, 2.0, len(p.parameter_names))
    pattern = fem.Pattern.build(p.mesh)
    A, f = direct_elasticity(p, mu)
    tol = 64 * EPS
    np.testing.assert_allclose(pattern.to_scipy(p.operator_values(mu, pattern)).toarray(), A.toarray(), rtol=0,
                               atol=tol * abs(A).max())
    np.testing.assert_allclose(p.rhs(mu, pattern), f, rtol=0, atol=tol * np.abs(f).max())


# -- certified RB on a user mesh ----------------------------------------------------------------------------
def test_certified_rb_on_a_user_mesh_has_effectivities_at_least_one(tmp_path):
    from rom.hifi.discretization.operators import Operators, operators_dataset
    from rom.hifi.solvers.solve import FullOrderModel
    from rom.models.rb import AffineCoefficients, CoerciveRBReductor

    path = gmsh_meshes.box(3, 0.25, tmp_path / "box.msh", regions=2)
    args = {"mesh": {"file": str(path)}, "conductivity": {"left": "k_l", "right": "k_r"}, "source": {"left": 1.0},
            "dirichlet": {"x0": 0.0}, "robin": {"x1": {"h": "h", "u_inf": 0.5}},
            "reference": {"k_l": 1.0, "k_r": 1.0, "h": 1.0}}
    p = Diffusion(args)
    bounds = np.array([[0.1, 10.0], [0.1, 10.0], [0.5, 5.0]])
    ops = Operators.from_dataset(operators_dataset(p))
    red = CoerciveRBReductor(ops.X, ops.A_terms, ops.f_terms, AffineCoefficients(p), bounds, p.parameter_names)
    fom = FullOrderModel(p, "petsc")
    fom.solver.ksp.setType("preonly")
    fom.solver.ksp.getPC().setType("lu")
    rng = np.random.default_rng(3)

    def draw(n):
        return np.exp(np.log(bounds[:, 0]) + (np.log(bounds[:, 1]) - np.log(bounds[:, 0])) * rng.random((n, 3)))

    for mu in draw(5):
        red.extend(fom.solve(mu).u)
    model = red.model()
    test = draw(20)
    U = np.array([fom.solve(m).u for m in test])
    c = model.solve_batch(test)
    delta = model.estimate_batch(test, c)
    E = U - c @ red.V
    err = np.sqrt(np.einsum("ij,ij->i", E, (ops.X @ E.T).T))
    assert np.all(err > 1e-10 * np.sqrt(np.einsum("ij,ij->i", U, (ops.X @ U.T).T)))  # errors above round-off
    eff = delta / err
    assert eff.min() >= 1.0, eff
    # min-theta: the bound is the smallest ratio theta_q(mu) / theta_q(mu_ref) and below the true constant.
    X = ops.X.toarray()
    L = np.linalg.inv(np.linalg.cholesky(X))
    for m in test[:3]:
        A = ops.assemble(p.theta(m[None])[0]).toarray()
        alpha = np.linalg.eigvalsh(L @ A @ L.T).min()
        assert p.coercivity_lower_bound(m[None])[0] <= alpha * (1 + 1e-10)


# -- refusals -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_region_box(tmp_path_factory):
    return gmsh_meshes.box(2, 0.3, tmp_path_factory.mktemp("refusals") / "part.msh", regions=2)


def refused(study, *parts):
    with pytest.raises(config.ConfigError) as err:
        config.validate(study, "s.yaml")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("s.yaml: "), msg
    for part in parts:
        assert part in msg, msg
    return msg


def study(path, parameters=None, **problem):
    base = {"name": "diffusion", "mesh": {"file": str(path)}, "conductivity": {"left": "k", "right": 1.0},
            "dirichlet": {"x0": 0.0}}
    base.update(problem)
    return {"name": "s", "problem": base, "parameters": parameters if parameters is not None else
            {"k": {"bounds": [0.5, 2.0]}}}


def test_a_valid_declaration_passes_and_records_the_mesh_digest(two_region_box):
    s = config.validate(study(two_region_box), "s.yaml")
    from rom.hifi.discretization.meshfile import file_digest

    assert s["problem"]["mesh"]["digest"] == file_digest(two_region_box)
    space = config.parameter_space(s)
    assert space.names == ("k",) and space.bounds.tolist() == [[0.5, 2.0]]


def test_bad_declarations_are_refused_in_one_line(two_region_box):
    p = two_region_box
    refused(study(p, conductivity={"left": "k", "right": 1.0, "core": 2.0}),
            "problem diffusion: conductivity.core: no region 'core' in mesh part.msh; it has regions: left, right")
    refused(study(p, conductivity={"left": "k"}),
            "problem diffusion: conductivity: region 'right' of mesh part.msh has none", "every region: left, right")
    refused(study(p, source={"shell": 1.0}), "source.shell: no region 'shell'", "it has regions: left, right")
    refused(study(p, robin={"fins": {"h": 1.0}}),
            "problem diffusion: robin.fins: no boundary group 'fins' in mesh part.msh; it has boundary groups: "
            "x0, x1, y0, y1")
    refused(study(p, neumann={"x0": 1.0}), "boundary group 'x0' is in both dirichlet and neumann")
    refused(study(p, robin={"x1": {"h": "h_conv"}}),
            "problem.robin.x1.h = 'h_conv': parameter h_conv is not declared in the study's parameters section "
            "(it declares: k)")
    refused(study(p, {"k": {"bounds": [0.5, 2.0]}, "k_fins": {"bounds": [1.0, 2.0]}}),
            "parameters.k_fins: declared but never used by the problem; it uses: k")
    refused(study(p, conductivity={"left": "k", "right": -1.0}), "problem diffusion: conductivity.right = -1: "
            "expected a value > 0")
    refused(study(p, {"k": {"bounds": [-1.0, 2.0]}}), "parameters.k.bounds = [-1.0, 2.0]: expected inside the "
            "admissible interval (0, inf)")
    refused(study(p, dirichlet={}, neumann={"x1": 1.0}),
            "problem diffusion: no dirichlet or robin boundary group: the stationary problem is singular")
    refused(study(p, reference={"q": 1.0}), "problem diffusion: reference.q: not a parameter of the operator; "
            "expected some of: k")
    refused(study(p, conductivity={"left": "1e3", "right": 1.0}), 'problem.conductivity.left = "1e3": expected to match')
    refused(study(p.parent / "missing.msh"), "problem diffusion: mesh missing.msh: file not found")
    no_mesh = study(p)
    del no_mesh["problem"]["mesh"]
    refused(no_mesh, "problem diffusion: mesh: missing; expected mesh: {file: part.msh}")


def test_bad_elasticity_declarations_are_refused(two_region_box, tmp_path):
    base = {"name": "elasticity", "mesh": {"file": str(two_region_box)}, "young": {"left": "E", "right": 2.0},
            "poisson": {"left": 0.3, "right": 0.3}, "fixed": {"x0": [0.0, 0.0]}}
    params = {"E": {"bounds": [1.0, 2.0]}}
    config.validate({"name": "s", "problem": base, "parameters": params}, "s.yaml")
    refused({"name": "s", "problem": {**base, "poisson": {"left": 0.3}}, "parameters": params},
            "problem elasticity: poisson: region 'right' has none")
    refused({"name": "s", "problem": {**base, "traction": {"x1": [0.0, 1.0, 0.0]}}, "parameters": params},
            "problem elasticity: traction.x1 = [0.0, 1.0, 0.0]: 3 components; expected 2 (the mesh is 2D)")
    refused({"name": "s", "problem": {**base, "fixed": {"x0": [None, None]}}, "parameters": params},
            "problem elasticity: fixed: no component is fixed")
    cube = gmsh_meshes.box(3, 0.5, tmp_path / "cube.msh")
    refused({"name": "s", "problem": {**base, "mesh": {"file": str(cube)}, "young": {"body": "E"},
                                      "poisson": {"body": 0.3}, "fixed": {"x0": [0, 0, 0]}, "plane": "stress"},
             "parameters": params}, "problem elasticity: plane = 'stress': the mesh is 3D")
