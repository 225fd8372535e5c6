"""Static import graph of the project's packages (every import statement, module level or inside a
function), for the import-cycle test, the layers of rom.hifi and the conda env cross-check."""
from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

from conftest import ROOT

PACKAGES = ("rom", "surrogates", "romflow")


@functools.lru_cache(maxsize=1)
def module_files() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


@functools.cache
def _imports(path: Path, module: str, is_package: bool, top_level: bool = False) -> tuple[str, ...]:
    """Absolute names imported by a module (`from a import b` gives a.b when a.b is a module);
    top_level: only the statements that run when the module is imported (not inside functions)."""
    tree = ast.parse(path.read_text(), str(path))
    base = module.split(".") if is_package else module.split(".")[:-1]
    names = []
    for node in ast.walk(tree) if not top_level else _outside_functions(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                prefix = base[: len(base) - node.level + 1]
                mod = ".".join(prefix + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.append(mod)
            names += [f"{mod}.{a.name}" for a in node.names]
    return tuple(names)


def _outside_functions(node):
    """The nodes of a module that run at import: everything but the bodies of functions."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        yield child
        yield from _outside_functions(child)


@functools.lru_cache(maxsize=1)
def graph() -> dict[str, set[str]]:
    """Project module -> project modules it imports."""
    files = module_files()
    out = {}
    for module, path in files.items():
        targets = set()
        for name in _imports(path, module, path.name == "__init__.py"):
            if name in files and name != module:
                targets.add(name)
        out[module] = targets
    return out


def _is_command(module: str) -> bool:
    return module.startswith(("rom.commands.", "surrogates.commands."))


def third_party(*modules: str) -> set[str]:
    """Top-level third-party packages a process running `modules` can import: every import of those
    modules and of the project modules they reach, transitively, except that the other command
    modules (imported by the stage registry) contribute their module-level imports only, since
    their stage functions do not run (the standard library and the project itself excluded)."""
    files = module_files()
    seen, todo, found = set(), list(modules), set()
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        names = _imports(files[m], m, files[m].name == "__init__.py", _is_command(m) and m not in modules)
        for name in names:
            if name in files and name != m:
                todo.append(name)
            top = name.split(".")[0]
            if top and top not in PACKAGES and top not in sys.stdlib_module_names:
                found.add(top)
    return found


def cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each as a list."""
    g = graph()
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


# The rooms of rom.hifi and what their modules must not import (name prefixes): discretization and problems
# are numpy/scipy code, solvers work on any problem through the contracts, and only solvers and the solve
# sequence that drives them touch PETSc and MPI. capabilities and registry (the rest of rom.hifi) neither.
MPI = ("petsc4py", "mpi4py")
HIFI_LAYERS = {
    "rom.hifi.discretization": ("rom.hifi.problems", "rom.hifi.solvers", "rom.hifi.sequence", "rom.hifi.registry",
                                *MPI),
    "rom.hifi.problems": ("rom.hifi.solvers", "rom.hifi.sequence", "rom.hifi.registry", *MPI),
    "rom.hifi.solvers": ("rom.hifi.problems", "rom.hifi.sequence", "rom.hifi.registry"),
    "rom.hifi.sequence": ("rom.hifi.problems", "rom.hifi.registry"),
    "rom.hifi": MPI,
}
# What a problem family may import from its own room: the shared base and study-file keys, not another family.
PROBLEMS_SHARED = ("rom.hifi.problems.base", "rom.hifi.problems.arguments")
# A family in several modules: the affine black box and the persistent worker build on the black box.
EXTERNAL_FAMILY = ("rom.hifi.problems.external", "rom.hifi.problems.external_terms", "rom.hifi.problems.external_checks",
                   "rom.hifi.problems.external_worker", "rom.hifi.problems.external_eim")
# The declared PDEs: the viscoplastic one builds on the declared problems' mesh, groups and parameters.
DECLARED_FAMILY = ("rom.hifi.problems.declared", "rom.hifi.problems.declared_viscoplastic")
FAMILY_MODULES = {**{m: EXTERNAL_FAMILY for m in EXTERNAL_FAMILY}, **{m: DECLARED_FAMILY for m in DECLARED_FAMILY}}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _private_reads(path: Path) -> list[str]:
    """`x._name` and getattr(x, "_name") where x is not self or cls: another object's private member."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute):
            owner, attr = node.value, node.attr
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
              and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
              and isinstance(node.args[1].value, str)):
            owner, attr = node.args[0], node.args[1].value
        else:
            continue
        if attr.startswith("_") and not attr.startswith("__") and not (
                isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
            out.append(f"{ast.unparse(owner)}.{attr} (line {node.lineno})")
    return out


def layer_violations() -> list[str]:
    """Every import across the layers of rom.hifi (HIFI_LAYERS), every problem family importing another
    family, and every read of another object's private member inside rom.hifi, one line each."""
    out = []
    for module, path in module_files().items():
        if not _within(module, "rom.hifi"):
            continue
        room = max((r for r in HIFI_LAYERS if _within(module, r)), key=len)
        for name in _imports(path, module, path.name == "__init__.py"):
            for banned in HIFI_LAYERS[room]:
                if _within(name, banned):
                    out.append(f"{module} imports {name} ({room} must not import {banned})")
            if (room == "rom.hifi.problems" and module != room and _within(name, room) and name != room
                    and not any(_within(name, shared) for shared in PROBLEMS_SHARED)
                    and not _within(name, module)
                    and not any(_within(name, m) for m in FAMILY_MODULES.get(module, ()))):
                out.append(f"{module} imports {name} (a problem family imports only {', '.join(PROBLEMS_SHARED)})")
        out += [f"{module} reads {read}, a private member of another object" for read in _private_reads(path)]
    return sorted(set(out))
