"""An independent assembler as the oracle of romflow's P1 assembly: scikit-fem (its own reference
elements, mappings, quadrature and sparse assembly) on the same nodes and cells, against the
matrices and vectors of the thermal block, heat and the declared diffusion and elasticity problems
of tests/test_contracts.py's SMALL table, affine term by affine term, entrywise on the free dofs
(romflow's free dof j is the node mesh.dof_node[j], component mesh.dof_component[j]; Dirichlet dofs
are left out of its pattern and lifted into the right-hand side, so the oracle restricts and lifts).

Tolerance: every assembled entry is a sum of at most `n` contributions (the cells around a node, the
boundary facets there), each computed by both codes to a few ulps of its size, which is at most the
largest assembled entry (a diagonal: a sum of positive terms). So |romflow - skfem| <= C eps n scale
with C = 8, scale = max|A|; for a load vector scale = max(max|f|, max|A| max|g|) (the Dirichlet lifting
-A[:, fixed] g), and n also counts the lifting's (d + 1) products per cell. Measured: at most ~3 eps scale
(0 on the unit square's right triangles); print them with `pytest -s tests/test_oracles.py`."""
import numpy as np
import pytest
import scipy.sparse as sp
from skfem import (
    Basis,
    BilinearForm,
    ElementTetP1,
    ElementTriP1,
    ElementVector,
    FacetBasis,
    LinearForm,
    MeshTet,
    MeshTri,
    asm,
)
from skfem.helpers import ddot, div, dot, grad, sym_grad

from rom.hifi.discretization import fem

EPS = np.finfo(float).eps
C = 8  # "a few ulps" per contribution (module docstring)


# -- skfem forms ----------------------------------------------------------------------------------
@BilinearForm
def laplace(u, v, w):
    return dot(grad(u), grad(v))


@BilinearForm
def mass(u, v, w):
    return u * v


@LinearForm
def unit_load(v, w):
    return v


def elasticity_form(lam, mu):
    """sigma(u) : eps(v) with sigma = 2 mu eps + lam tr(eps) I (Lame parameters of the region)."""

    @BilinearForm
    def form(u, v, w):
        return 2.0 * mu * ddot(sym_grad(u), sym_grad(v)) + lam * div(u) * div(v)

    return form


def vector_load(t):
    @LinearForm
    def form(v, w):
        return sum(ti * v[i] for i, ti in enumerate(t))

    return form


# -- the oracle's mesh and its dof map onto romflow's free dofs ------------------------------------
class Oracle:
    """skfem's mesh built from romflow's nodes and cells; `free` the skfem dof of each romflow free dof."""

    def __init__(self, mesh, components=1):
        dim = mesh.nodes.shape[1]
        cls, elem = (MeshTri, ElementTriP1) if dim == 2 else (MeshTet, ElementTetP1)
        self.mesh = cls(np.ascontiguousarray(mesh.nodes.T, dtype=float), np.ascontiguousarray(mesh.cells.T))
        self.elem = elem() if components == 1 else ElementVector(elem(), dim)
        self.basis = Basis(self.mesh, self.elem)
        nodal = self.basis.nodal_dofs  # (components, n_nodes) skfem dof of (component, node)
        assert nodal.shape == (components, len(mesh.nodes))
        node = mesh.dof_node if hasattr(mesh, "dof_node") else mesh.interior_nodes
        comp = mesh.dof_component if components > 1 else np.zeros(len(node), dtype=int)
        self.free = nodal[comp, node]
        # Contributions per entry: the cells around a node, plus the boundary facets there.
        self.valence = int(np.bincount(mesh.cells.ravel()).max())
        bf = self.mesh.facets[:, self.mesh.boundary_facets()]
        self.facet_valence = int(np.bincount(bf.ravel()).max())
        self.k = mesh.cells.shape[1]
        key = {tuple(f): i for i, f in enumerate(np.sort(self.mesh.facets.T, axis=1).tolist())}
        self._facet = key

    def cells_basis(self, cells):
        return Basis(self.mesh, self.elem, elements=np.asarray(cells))

    def facet_basis(self, facets):
        """FacetBasis on romflow's facets (node tuples) found among skfem's facets."""
        idx = np.array([self._facet[tuple(f)] for f in np.sort(facets, axis=1).tolist()])
        return FacetBasis(self.mesh, self.elem, facets=idx)

    def restrict(self, A):
        return A.tocsr()[self.free][:, self.free]


def check_matrix(pattern, values, A_oracle, contributions, what, report=None):
    """romflow's CSR values on `pattern` against the oracle's free-dof matrix, entrywise (the union of
    both sparsity patterns: an entry in one only must be zero in the other)."""
    R = pattern.to_scipy(values)
    assert R.shape == A_oracle.shape, what
    scale = max(abs(R).max(), abs(A_oracle).max())
    diff = abs(R - A_oracle).max()
    tol = C * EPS * contributions * scale
    if report is not None:
        report.append((what, diff / (EPS * scale), tol / (EPS * scale)))
    assert scale > 0 and diff <= tol, f"{what}: max |romflow - skfem| = {diff:.3e} > {tol:.3e} (scale {scale:.3e})"


def check_vector(got, want, contributions, what, report=None, lift=0.0):
    scale = max(np.abs(got).max(), np.abs(want).max(), lift)
    diff = np.abs(got - want).max()
    tol = C * EPS * contributions * scale
    if report is not None:
        report.append((what, diff / (EPS * scale), tol / (EPS * scale)))
    assert scale > 0 and diff <= tol, f"{what}: max |romflow - skfem| = {diff:.3e} > {tol:.3e} (scale {scale:.3e})"


# -- oracles per problem: A(mu) and f(mu) on the free dofs --------------------------------------
def thermal_block_blocks(p, o):
    """Block of each skfem cell from its centroid (the problem's definition: B1 x B2 blocks, x fastest)."""
    b1, b2 = p.blocks
    c = o.mesh.p[:, o.mesh.t].mean(axis=1)
    return np.minimum((c[1] * b2).astype(int), b2 - 1) * b1 + np.minimum((c[0] * b1).astype(int), b1 - 1)


def thermal_block_terms(p, o):
    """A_q (stiffness on block q) and the unit load, restricted to the free dofs."""
    block = thermal_block_blocks(p, o)
    A = [o.restrict(asm(laplace, o.cells_basis(np.flatnonzero(block == q)))) for q in range(p.n_terms)]
    return A, asm(unit_load, o.basis)[o.free]


def heat_sides(nodes):
    """Dirichlet weights of the sides left, right, bottom, top (a corner half-half)."""
    x, y = nodes.T
    s = np.stack([np.isclose(x, 0), np.isclose(x, 1), np.isclose(y, 0), np.isclose(y, 1)]).astype(float)
    n = s.sum(axis=0)
    return np.divide(s, n, out=np.zeros_like(s), where=n > 0)


def declared_values(p, mu):
    val = dict(zip(p.parameter_names, np.atleast_1d(mu)))
    return lambda x: val[x] if isinstance(x, str) else float(x)


def declared_diffusion(p, mu, o):
    """-div(k grad u) = s, Neumann k du/dn = q, Robin -k du/dn = h (u - u_inf), Dirichlet u = g lifted."""
    v, a, mf = declared_values(p, mu), p.args, p.file
    A = sum(v(a["conductivity"][r]) * asm(laplace, o.cells_basis(mf.region_cells(r))) for r in mf.regions)
    f = np.zeros(o.basis.N)
    for r, s in a.get("source", {}).items():
        f += v(s) * asm(unit_load, o.cells_basis(mf.region_cells(r)))
    for g, q in a.get("neumann", {}).items():
        f += v(q) * asm(unit_load, o.facet_basis(mf.group_facets(g)))
    for g, r in a.get("robin", {}).items():
        fb = o.facet_basis(mf.group_facets(g))
        A = A + v(r["h"]) * asm(mass, fb)
        f += v(r["h"]) * v(r.get("u_inf", 0.0)) * asm(unit_load, fb)
    gD, count = np.zeros(o.basis.N), np.zeros(o.basis.N)
    for g, value in a.get("dirichlet", {}).items():
        nodes = np.unique(mf.group_facets(g))
        gD[nodes] += v(value)
        count[nodes] += 1
    return lifted(A.tocsr(), f, gD, count, o)


def lame(E, nu, dim, plane):
    """Lame parameters; plane stress replaces lambda by 2 lambda mu / (lambda + 2 mu) = E nu / (1 - nu^2)."""
    mu = E / (2 * (1 + nu))
    if dim == 2 and plane == "stress":
        return E * nu / (1 - nu * nu), mu
    return E * nu / ((1 + nu) * (1 - 2 * nu)), mu


def declared_elasticity(p, mu, o):
    v, a, mf, dim = declared_values(p, mu), p.args, p.file, p.mesh.dim
    plane = a.get("plane", "stress")
    A = sum(asm(elasticity_form(*lame(v(a["young"][r]), float(a["poisson"][r]), dim, plane)),
                o.cells_basis(mf.region_cells(r))) for r in mf.regions)
    f = np.zeros(o.basis.N)
    for r, b in a.get("body_force", {}).items():
        f += asm(vector_load([v(bi) for bi in b]), o.cells_basis(mf.region_cells(r)))
    for g, t in a.get("traction", {}).items():
        f += asm(vector_load([v(ti) for ti in t]), o.facet_basis(mf.group_facets(g)))
    gD, count = np.zeros(o.basis.N), np.zeros(o.basis.N)
    nodal = o.basis.nodal_dofs
    for g, comps in a["fixed"].items():
        nodes = np.unique(mf.group_facets(g))
        for i, ci in enumerate(comps):
            if ci is not None:
                gD[nodal[i, nodes]] += v(ci)
                count[nodal[i, nodes]] += 1
    return lifted(A.tocsr(), f, gD, count, o)


def lifted(A, f, gD, count, o):
    """A[free, free], f[free] - A[free, fixed] g (a dof in several groups takes their mean) and the size
    max|A| max|g| of the lifting's products."""
    fixed = count > 0
    gD[fixed] /= count[fixed]
    assert not np.isin(o.free, np.flatnonzero(fixed)).any() and len(o.free) + fixed.sum() == o.basis.N
    lift = abs(A).max() * np.abs(gD).max(initial=0.0)
    return o.restrict(A), f[o.free] - A[o.free][:, fixed] @ gD[fixed], lift


def oracle_operator(name, p, mu, o):
    """The operator A(mu) on the free dofs, assembled by skfem (used by tests/test_contracts.py)."""
    if name == "thermal_block":
        A, _ = thermal_block_terms(p, o)
        return sum(m * Aq for m, Aq in zip(mu, A))
    if name == "heat":
        return o.restrict(asm(mass, o.basis) + p.dt * p.alpha * asm(laplace, o.basis))
    return (declared_diffusion if name == "diffusion" else declared_elasticity)(p, mu, o)[0]


def oracle_for(name, p):
    return Oracle(p.mesh, p.mesh.components if hasattr(p.mesh, "components") else 1)


# -- the tests ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report():
    rows = []
    yield rows
    print("\nmax |romflow - skfem| / (eps max|A|)  vs  tolerance / (eps max|A|):")
    for what, got, tol in rows:
        print(f"  {what:48s} {got:8.2f}  {tol:8.1f}")


def test_thermal_block_terms_load_and_x_product(report):
    from test_contracts import make

    _, _, p = make("thermal_block")
    pattern = fem.Pattern.build(p.mesh)
    o = oracle_for("thermal_block", p)
    A, f = thermal_block_terms(p, o)
    terms = p.operator_terms(pattern)
    assert len(terms) == len(A) == 6
    for q in range(6):
        check_matrix(pattern, terms[q], A[q], o.valence, f"thermal_block A_{q}", report)
    rhs = p.rhs_terms(pattern)
    assert rhs.shape == (1, pattern.n_rows)
    check_vector(rhs[0], f, o.valence, "thermal_block f", report)
    check_matrix(pattern, p.energy_product(pattern), o.restrict(asm(laplace, o.basis)), o.valence,
                 "thermal_block X", report)
    check_matrix(pattern, p.mass_product(pattern), o.restrict(asm(mass, o.basis)), o.valence, "thermal_block M",
                 report)


def test_heat_mass_stiffness_and_side_liftings(report):
    from test_contracts import make

    _, _, p = make("heat")
    pattern = fem.Pattern.build(p.mesh)
    o = oracle_for("heat", p)
    K, M = asm(laplace, o.basis).tocsr(), asm(mass, o.basis).tocsr()
    terms = p.operator_terms(pattern)
    assert len(terms) == 2
    check_matrix(pattern, terms[0], o.restrict(M), o.valence, "heat M", report)
    check_matrix(pattern, terms[1], o.restrict(K), o.valence, "heat K", report)
    check_matrix(pattern, p.mass_product(pattern), o.restrict(M), o.valence, "heat mass product", report)
    check_matrix(pattern, p.energy_product(pattern), o.restrict(K), o.valence, "heat X", report)
    # The lifting of side s: -K[free, :] g_s (g_s vanishes inside), one term per side.
    sides = heat_sides(o.mesh.p.T)
    rhs = p.rhs_terms(pattern)
    assert rhs.shape == (4, pattern.n_rows)
    for s, name in enumerate(("left", "right", "bottom", "top")):
        check_vector(rhs[s], -(K[o.free] @ sides[s]), o.valence * o.k, f"heat lifting {name}", report,
                     lift=abs(K).max())


# The SMALL declarations of tests/test_contracts.py with their numbers, and with parameters in their
# places (every operator coefficient, load and boundary datum a parameter, a Dirichlet value lifted).
PARAMETRIZED = {
    "diffusion": {"conductivity": {"base": "k_base", "pad": 4.0, "fins": "k_fins"},
                  "source": {"base": "s", "pad": 0.5}, "neumann": {"heater": "q"},
                  "robin": {"convective": {"h": "h", "u_inf": "t_inf"}}, "dirichlet": {"underside": "t_bottom"}},
    "elasticity": {"young": {"plate": "E_plate", "ring": 1.0}, "poisson": {"plate": 0.3, "ring": 0.4},
                   "fixed": {"clamp": [0.0, "d"], "hole": [None, 0.1]}, "traction": {"load": ["t_x", -1.0]},
                   "body_force": {"ring": [0.0, "g"]}},
}


def declared_problems(name):
    from test_contracts import make

    cls, spec, p = make(name)  # writes the mesh (mesh.generate) on first use
    args = {k: v for k, v in spec.items() if k != "name"}
    out = [("as declared", p)]
    out.append(("parametrized", cls.from_arguments({"mesh": args["mesh"], **PARAMETRIZED[name]})))
    for plane in ("stress", "strain") if name == "elasticity" else ():
        out.append((f"plane {plane}", cls.from_arguments({**args, "plane": plane})))
    return out


@pytest.mark.parametrize("name", ["diffusion", "elasticity"])
def test_declared_terms_against_skfem(name, report):
    """A(mu) = sum theta_q(mu) A_q and f(mu) = sum phi_p(mu) f_p at mu = 0 (the numbers' terms), at each
    unit vector (each parameter's terms) and at a random point (the products), per declaration."""
    for label, p in declared_problems(name):
        pattern = fem.Pattern.build(p.mesh)
        o = oracle_for(name, p)
        d = len(p.parameter_names)
        assert (d > 0) == (label == "parametrized")
        rng = np.random.default_rng(4)
        mus = [np.zeros(d), *np.eye(d), rng.uniform(0.5, 2.0, d)] if d else [np.zeros(0)]
        n = o.valence + o.facet_valence
        assemble = declared_diffusion if name == "diffusion" else declared_elasticity
        for i, mu in enumerate(mus):
            A, f, lift = assemble(p, mu, o)
            check_matrix(pattern, p.operator_values(mu, pattern), A, n, f"{name} {label} A(mu_{i})", report)
            check_vector(p.rhs(mu, pattern), f, n * o.k, f"{name} {label} f(mu_{i})", report, lift)
        # The X product: A at the reference parameter (1 for each).
        A_ref = assemble(p, np.ones(d), o)[0]
        check_matrix(pattern, p.energy_product(pattern), A_ref, n, f"{name} {label} X", report)
        M = asm(mass, Basis(o.mesh, o.elem.elem if name == "elasticity" else o.elem))
        if name == "elasticity":
            M = sp.kron(M, sp.eye(p.mesh.dim)).tocsr()  # skfem's vector dofs: components of a node consecutive
            assert np.array_equal(o.basis.nodal_dofs, np.arange(o.basis.N).reshape(-1, p.mesh.dim).T)
        check_matrix(pattern, p.mass_product(pattern), o.restrict(M), o.valence, f"{name} {label} M", report)
