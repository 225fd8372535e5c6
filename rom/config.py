"""Study configs: one JSON schema (workflow/schemas) with defaults, checked the same way by the
Snakefile and by the CLI, so bad input fails before any work with one line naming the key, the value
and what was expected.

Validation runs in this order, each step assuming the previous ones passed:
1. the study schema (core keys and every stage section, defaults filled in);
2. the problem: its name (or import path), then its own keys against the JSON-schema properties the
   problem class declares (`arguments`), by the same validator;
3. the parameter space the problem declares, with the study's `parameters` overrides (names, bounds
   inside the admissible interval);
4. the designs: sizes (below `design.max_samples`, computed before anything is allocated), the
   list file (resolved relative to the study file);
5. every enabled stage (rom.pipeline): the problem capabilities it needs and its own semantic checks.

Relative paths in a study file (design.file, problem.mesh.file, include_studies) are relative to the
folder of that study file; the resolved study stores them absolute.
"""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import jsonschema
import yaml

from rom import sweeps
from rom.errors import ConfigError
from rom.hifi.capabilities import ParameterSpace
from rom.paths import ROOT, digest, write_text_if_changed

__all__ = ["ConfigError", "ROOT", "digest", "load", "parameter_space", "problem_class", "schema", "studies",
           "validate", "write_study", "design_sizes", "make_problem", "invocation"]

SCHEMA_DIR = ROOT / "workflow" / "schemas"
DEFAULT_STUDY = ROOT / "config" / "config.yaml"


def schema() -> dict:
    """The study schema with every stage section of schemas/stages/ merged in."""
    main = yaml.safe_load((SCHEMA_DIR / "config.schema.yaml").read_text())
    for path in sorted((SCHEMA_DIR / "stages").glob("*.schema.yaml")):
        main["properties"][path.name.split(".")[0]] = yaml.safe_load(path.read_text())
    return main


def _with_defaults(cls):
    """A validator that fills `default` values of absent properties (then validates them), and knows
    the keyword `increasing: true` (an array of numbers in strictly increasing order: ranges)."""
    validate_props = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, sch):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
                elif "$ref" in sub and key not in instance:
                    ref = validator.resolver.resolve(sub["$ref"])[1]
                    if "default" in ref:
                        instance[key] = copy.deepcopy(ref["default"])
        yield from validate_props(validator, props, instance, sch)

    def increasing(validator, value, instance, sch):
        if value and isinstance(instance, list) and all(isinstance(v, (int, float)) for v in instance):
            if any(b <= a for a, b in zip(instance, instance[1:])):
                yield jsonschema.ValidationError("expected lower < upper")

    def finite(validator, value, instance, sch):
        if value and isinstance(instance, float) and not math.isfinite(instance):
            yield jsonschema.ValidationError("expected a finite number")

    return jsonschema.validators.extend(cls, {"properties": properties, "increasing": increasing, "finite": finite})


_Validator = _with_defaults(jsonschema.Draft7Validator)


# One name for one concept across sections (the basis-size cap is max_modes everywhere); the old
# names are refused with a hint rather than silently ignored or silently accepted.
RENAMED = {"rb.N_max": "max_modes", "eim.M_max": "max_modes", "local.max_size": "max_modes", "gp.n_modes": "max_modes"}

# Settings removed because the project's own measurements showed no gain (docs/data_generation.md): a study
# file that still sets one is refused with the reason, rather than silently ignored.
_FROZEN = "a preconditioner kept across samples (frozen) cost 0.74-0.78x the wall time"
REMOVED = {
    "simulate.preconditioner_reuse": f"{_FROZEN} and GAMG interpolation reuse 0.92-0.95x; every solve now "
                                     "builds its preconditioner",
    "simulate.rebuild_factor": f"it tuned the frozen preconditioner, and {_FROZEN}",
    "simulate.rebuild_rule": f"it tuned the frozen preconditioner, and {_FROZEN}",
    "simulate.deflation": "PCDEFLATION made the stage 2.2x slower",
    "simulate.deflation_size": "it sized PCDEFLATION's space, and PCDEFLATION made the stage 2.2x slower",
}
_KSPGUESS = ("PETSc 3.18 resets its KSPGuess whenever the matrix changes: the iterations equaled a zero start's; "
             "projection is the Galerkin guess that gains")
REMOVED_VALUES = {("simulate.initial_guess", "fischer"): _KSPGUESS, ("simulate.initial_guess", "pod"): _KSPGUESS}


def _describe(err: jsonschema.ValidationError, prefix: str = "") -> str:
    path = ".".join([prefix] * bool(prefix) + [str(p) for p in err.absolute_path]) or "<top>"
    v, val = err.validator, err.validator_value
    if v == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known))
        where = f"{path}." if path != "<top>" else ""
        if f"{where}{extra[0]}" in RENAMED:
            new = RENAMED[f"{where}{extra[0]}"]
            return f"{where}{extra[0]}: renamed; expected {where}{new} (the same setting under its new name)"
        if f"{where}{extra[0]}" in REMOVED:
            return (f"{where}{extra[0]}: removed, it measured no gain ({REMOVED[f'{where}{extra[0]}']}; "
                    "docs/data_generation.md); expected the key deleted")
        return f"{where}{extra[0]}: unknown key; expected one of: {', '.join(known)}"
    if v == "required":
        return f"{path}: missing key; {err.message}"
    if v == "enum" and isinstance(err.instance, str) and (path, err.instance) in REMOVED_VALUES:
        return (f"{path} = {json.dumps(err.instance)}: removed, it measured no gain "
                f"({REMOVED_VALUES[path, err.instance]}; docs/data_generation.md); expected one of {val}")
    expected = {
        "type": f"expected type {val}",
        "enum": f"expected one of {val}",
        "minimum": f"expected a value >= {val}",
        "maximum": f"expected a value <= {val}",
        "exclusiveMinimum": f"expected a value > {val}",
        "exclusiveMaximum": f"expected a value < {val}",
        "minItems": f"expected at least {val} items",
        "maxItems": f"expected at most {val} items",
        "pattern": f"expected to match {val}",
        "increasing": "expected lower < upper",
        "finite": "expected a finite number",
    }.get(v, err.message)
    return f"{path} = {json.dumps(err.instance)}: {expected}"


def _schema_errors(instance, sch: dict, source: str, prefix: str = ""):
    errors = sorted(_Validator(sch).iter_errors(instance), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        # The deepest path first would name a leaf inside a wrong container; the shallowest names the key.
        raise ConfigError(f"{source}: {_describe(errors[0], prefix)}")


# -- the problem ------------------------------------------------------------------------------------
def problem_class(spec: dict, source: str = "config", base_dir: Path | None = None):
    """The problem class a study's `problem` section names (a registered name, or `class: module:Name`)."""
    from rom.hifi import registry

    try:
        return registry.problem_class(spec, base_dir)
    except registry.ProblemLookupError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _problem_schema(cls) -> dict:
    props = {"name": {"type": "string"}, "class": {"type": "string"}, **copy.deepcopy(cls.arguments)}
    return {"type": "object", "additionalProperties": False, "properties": props}


def parameter_space(study: dict) -> ParameterSpace:
    """The study's parameter space: the problem's declaration (from its arguments alone, no mesh) with
    the study's `parameters` overrides. Also unpacks as (names, bounds, distributions)."""
    from rom.hifi import registry

    return registry.parameter_space(study)


def make_problem(study: dict, operators=None):
    """The problem object of a validated study (builds the mesh). With `operators`, the path of the
    study's operators artefact, a problem on a mesh file (a class with `from_mesh_file`) is built on the
    mesh stored there (rom.hifi.discretization.operators.read_mesh: the same arrays and numbering)
    instead of parsing the file again; an artefact without a mesh falls back to the file."""
    from rom.hifi import registry

    spec = study["problem"]
    if operators is not None:
        cls = registry.problem_class(spec)
        if hasattr(cls, "from_mesh_file"):
            from rom.errors import ArtefactError
            from rom.hifi.discretization.meshfile import MeshFileError
            from rom.hifi.discretization.operators import read_mesh

            mesh = spec.get("mesh") if isinstance(spec.get("mesh"), dict) else {}
            try:
                mesh_file = read_mesh(operators, mesh.get("digest"))
            except MeshFileError as exc:
                raise ArtefactError(str(exc)) from None
            except OSError as exc:
                raise ArtefactError(f"{operators}: not a readable romflow artefact ({exc})") from None
            if mesh_file is not None:
                return cls.from_mesh_file({k: v for k, v in spec.items() if k not in ("name", "class")}, mesh_file)
            import logging

            logging.getLogger("romflow.config").warning(
                "%s holds no mesh (written before the mesh was stored there): the mesh file is parsed again; rerun "
                "the operators stage to read it once", operators)
    return registry.make_problem(spec)


# -- designs ----------------------------------------------------------------------------------------
def design_sizes(study: dict, dim: int) -> dict[str, int]:
    """Samples per set, computed without drawing them (a grid has grid_points ** dim points)."""
    d = study["design"]
    sizes = {s: int(d[s]["size"]) for s in ("train", "test", "validation")}
    if d["method"] == "grid":
        sizes["train"] = int(d["grid_points"]) ** dim
    elif d["method"] == "list":
        sizes["train"] = _list_rows(d["file"])
    return sizes


def _list_rows(path) -> int:
    with open(path) as fh:
        return max(sum(1 for line in fh if line.strip()) - 1, 0)


def _resolve(path: str, base_dir: Path | None) -> str:
    p = Path(path).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return str(p.absolute())


def _check_design(study: dict, space: ParameterSpace, source: str, base_dir: Path | None):
    d = study["design"]
    if d["method"] == "list":
        if "file" not in d:
            raise ConfigError(f"{source}: design.file: missing; expected a CSV path for method list")
        d["file"] = _resolve(d["file"], base_dir)
        if not Path(d["file"]).is_file():
            raise ConfigError(f"{source}: design.file = {json.dumps(d['file'])}: file not found; expected a CSV "
                              "(header of parameter names, one sample per row; relative paths start at the study file)")
        from rom.design import read_list

        try:
            read_list(d["file"], list(space.names), space.bounds)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    elif "file" in d:
        raise ConfigError(f"{source}: design.file: set but design.method = {d['method']}; expected method list")
    sizes = design_sizes(study, space.dim)
    limit = d["max_samples"]
    for name, n in sizes.items():
        if n > limit:
            what = (f"{d['grid_points']}^{space.dim} = {n} grid points" if name == "train" and d["method"] == "grid"
                    else f"{n} samples")
            raise ConfigError(f"{source}: design.{name}: {what}; expected at most design.max_samples = {limit} "
                              "(raise it to run a larger design)")
    if sizes["train"] < 1:
        key = "design.file" if d["method"] == "list" else "design.train.size"
        raise ConfigError(f"{source}: {key}: no train sample; expected at least 1")


# -- the study ---------------------------------------------------------------------------------------
def validate(study: dict, source: str = "config", base_dir: str | Path | None = None) -> dict:
    """Defaults filled, schema and semantic checks; raises ConfigError with one line."""
    if not isinstance(study, dict):
        raise ConfigError(f"{source}: expected a mapping of study settings at the top level")
    base_dir = Path(base_dir) if base_dir is not None else None
    study = copy.deepcopy(study)
    _schema_errors(study, schema(), source)
    cls = problem_class(study["problem"], source, base_dir)
    _schema_errors(study["problem"], _problem_schema(cls), source, "problem")
    mesh = study["problem"].get("mesh", {})
    if isinstance(mesh, dict) and "file" in mesh:
        mesh["file"] = _resolve(mesh["file"], base_dir)
    for key, sub in cls.arguments.items():  # the problem's own path-valued keys
        if isinstance(sub, dict) and sub.get("x-path") and isinstance(study["problem"].get(key), str):
            study["problem"][key] = _resolve(study["problem"][key], base_dir)
    if hasattr(cls, "resolve_paths"):  # a problem's further study-relative paths (a black box's inputs)
        cls.resolve_paths(study["problem"], base_dir)
    if "class" in study["problem"]:
        study["problem"]["class"] = problem_class(study["problem"], source, base_dir).import_path
    try:
        cls.check_arguments(study["problem"]) if hasattr(cls, "check_arguments") else None
        space = cls.parameter_space(study["problem"]).overridden(study["parameters"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    _check_design(study, space, source, base_dir)
    from rom import pipeline  # the stage registry: the enabled stages' needs and checks

    pipeline.check_study(study, cls, source)
    return study


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: study file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of study settings at the top level")
    return raw


def load(path: str | Path) -> dict:
    """Read and validate one study file (relative paths in it start at its folder)."""
    path = Path(path)
    return validate(_read_yaml(path), str(path), path.parent)


def studies(config: dict, source: str = "config", base_dir: str | Path | None = None) -> dict[str, dict]:
    """All studies of one invocation, by name: the config itself, its include_studies (paths relative
    to base_dir, the config's folder), and the sweep points of each (rom.sweeps)."""
    base_dir = Path(base_dir) if base_dir is not None else None
    main = validate(config, source, base_dir)
    includes, main["include_studies"] = main["include_studies"], []
    out = {main["name"]: main}
    for path in includes:
        extra = load(_resolve(path, base_dir))
        extra["include_studies"] = []  # one level: included studies do not include further ones
        if extra["name"] in out:
            raise ConfigError(f"{path}: name = {json.dumps(extra['name'])}: expected a study name not used twice")
        out[extra["name"]] = extra
    return sweeps.with_sweeps(out, lambda s, src: validate(s, src), source)


def invocation(configfiles, config: dict, default: Path = DEFAULT_STUDY) -> tuple[dict, str, Path]:
    """(study config, source, base folder) of one Snakemake invocation. `config` is Snakemake's: the
    study files given on the command line merged in order, plus `--config KEY=VALUE` overrides. Those
    files run alone, with the schema's defaults; with none, the default study (with the overrides)."""
    files = [Path(f) for f in configfiles]
    plain = json.loads(json.dumps(dict(config), default=str))
    if files:
        return plain, ", ".join(map(str, files)), files[-1].parent
    return _deep_update(_read_yaml(default), plain), str(default), default.parent


def _deep_update(base: dict, new: dict) -> dict:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
    return base


def write_study(study: dict, path: str | Path) -> bool:
    """Write the resolved study file atomically, only when its content changes (so its mtime marks
    real changes). Returns whether it was written."""
    return write_text_if_changed(path, yaml.safe_dump(study, sort_keys=False))
