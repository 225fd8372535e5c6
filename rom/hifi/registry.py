"""Problems by name (the built-in ones, listed here) or by import path (a user's class:
`problem: {class: "mypackage.heat:MyProblem"}`, from an installed package or a module beside the study
file). Every class is checked against the capability protocols it declares before any job."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

from .capabilities import ProblemContractError, check_problem_class
from .problems import (
    Diffusion,
    Elasticity,
    External,
    ExternalMatrices,
    ExternalTransient,
    Heat,
    MeshFamily,
    NonaffineDiffusion,
    NonlinearHeat,
    TensilePlate,
    ThermalBlock,
    TransientDiffusion,
    Viscoplastic,
)
from .problems.external_eim import ExternalEntries
from .problems.external_terms import ExternalAffine, ExternalAffineMinTheta, affine_variant

PROBLEMS: dict[str, type] = {}


class ProblemLookupError(ValueError):
    """An unknown problem name, an import path that does not load, or a class that breaks its contract."""


def register(cls):
    """Add a problem class under its `name` (checked against the capabilities it declares)."""
    check_problem_class(cls)
    cls.import_path = f"{cls.__module__}:{cls.__qualname__}"
    PROBLEMS[cls.name] = cls
    return cls


for _cls in (ThermalBlock, Heat, NonaffineDiffusion, NonlinearHeat, TensilePlate, MeshFamily, Diffusion,
             Elasticity, External, Viscoplastic):
    register(_cls)
# Forms a registered name takes by its keys (`variant(spec)`): checked like the registered classes.
for _cls in (TransientDiffusion, ExternalMatrices, ExternalTransient, ExternalAffine, ExternalAffineMinTheta,
             ExternalEntries):
    check_problem_class(_cls)
    _cls.import_path = f"{_cls.__module__}:{_cls.__qualname__}"


_LOCAL_MODULES: dict[tuple, object] = {}


def _local_module(file: Path):
    """A module beside a study file, executed once per version of the file (validation looks the class
    up several times) under a private name, so it shadows no installed module of the same name; its
    folder is appended to sys.path, so it can import modules beside it."""
    file = file.resolve()
    stat = file.stat()
    key = (str(file), stat.st_mtime_ns, stat.st_size)
    if key not in _LOCAL_MODULES:
        name = f"_romflow_study_{file.stem}_{hashlib.sha1(str(file).encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        if str(file.parent) not in sys.path:
            sys.path.append(str(file.parent))
        sys.modules[name] = module  # dataclasses and pickling look the module up by name
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        _LOCAL_MODULES[key] = module
    return _LOCAL_MODULES[key]


def _import_class(path: str, base_dir: Path | None):
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ProblemLookupError(f"problem.class = {path!r}: expected 'module:ClassName' (e.g. mypackage.heat:MyProblem)")
    local = base_dir / (module_name.replace(".", "/") + ".py") if base_dir is not None else None
    try:
        if local is not None and local.is_file():
            module = _local_module(local)
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:  # a user's module may fail in any way: one line naming it
        raise ProblemLookupError(f"problem.class = {path!r}: cannot import {module_name} "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); expected an "
                                 f"installed module or {module_name.replace('.', '/')}.py beside the study file") from None
    cls = getattr(module, attr, None)
    if not inspect.isclass(cls):
        raise ProblemLookupError(f"problem.class = {path!r}: {module_name} has no class {attr}")
    try:
        check_problem_class(cls)
    except ProblemContractError as exc:
        raise ProblemLookupError(f"problem.class = {path!r}: {exc}") from None
    # Stored in the resolved study: a module beside the study file by its absolute file path.
    cls.import_path = f"{local.resolve()}:{attr}" if local is not None and local.is_file() else path
    return cls


def problem_class(spec: dict, base_dir: Path | None = None):
    """The class a `problem` section names: `class` (import path) wins over `name`."""
    if not isinstance(spec, dict):
        raise ProblemLookupError(f"problem = {spec!r}: expected a mapping with a name (or a class)")
    if spec.get("class"):
        path = str(spec["class"])
        builtin = [c for c in PROBLEMS.values() if c.import_path == path]
        if builtin:
            return builtin[0]
        if ".py:" in path:  # an absolute file path stored by an earlier resolution
            file, attr = path.rsplit(":", 1)
            return _import_class(f"{Path(file).stem}:{attr}", Path(file).parent)
        return _import_class(path, base_dir)
    name = spec.get("name")
    if name not in PROBLEMS:
        raise ProblemLookupError(f"problem.name = {name!r}: expected one of {sorted(PROBLEMS)} "
                                 "(or problem.class: 'module:ClassName' for a class of your own)")
    cls = PROBLEMS[name]
    if cls is External and spec.get("affine"):  # a black box that exports its affine terms
        return affine_variant(spec)
    if cls is External and spec.get("entries_command"):  # a non-affine black box with an entries mode
        return ExternalEntries
    # A declared PDE's capabilities follow from its keys (a `transient` form is another class).
    return cls.variant(spec) if hasattr(cls, "variant") else cls


def make_problem(spec: dict, base_dir: Path | None = None):
    """The problem object of a validated `problem` section (builds its mesh)."""
    cls = problem_class(spec, base_dir)
    args = {k: v for k, v in spec.items() if k not in ("name", "class")}
    if hasattr(cls, "from_arguments"):
        return cls.from_arguments(args)
    return cls(**args)


def parameter_space(study: dict):
    """A validated study's parameter space: the problem's declaration with the study's `parameters`."""
    spec = study["problem"]
    return problem_class(spec).parameter_space(spec).overridden(study.get("parameters", {}))
