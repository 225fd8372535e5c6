"""Study configs: one JSON schema (workflow/schemas) with defaults, checked the same way by the
Snakefile and by the CLI, so bad input fails before any work with one line naming the key, the
value and what was expected."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import jsonschema
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "workflow" / "schemas"


class ConfigError(ValueError):
    """A user error in a study config; its message is the one line shown to the user."""


def schema() -> dict:
    """The study schema with every stage section of schemas/stages/ merged in."""
    main = yaml.safe_load((SCHEMA_DIR / "config.schema.yaml").read_text())
    for path in sorted((SCHEMA_DIR / "stages").glob("*.schema.yaml")):
        main["properties"][path.name.split(".")[0]] = yaml.safe_load(path.read_text())
    return main


def _with_defaults(cls):
    """A validator that fills `default` values of absent properties (then validates them)."""
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

    return jsonschema.validators.extend(cls, {"properties": properties})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def _describe(err: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in err.absolute_path) or "<top>"
    v, val = err.validator, err.validator_value
    if v == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known))
        where = f"{path}." if err.absolute_path else ""
        return f"{where}{extra[0]}: unknown key; expected one of: {', '.join(known)}"
    if v == "required":
        return f"{path}: missing key; {err.message}"
    expected = {
        "type": f"expected type {val}",
        "enum": f"expected one of {val}",
        "minimum": f"expected a value >= {val}",
        "maximum": f"expected a value <= {val}",
        "exclusiveMinimum": f"expected a value > {val}",
        "minItems": f"expected at least {val} items",
        "maxItems": f"expected at most {val} items",
        "pattern": f"expected to match {val}",
    }.get(v, err.message)
    return f"{path} = {json.dumps(err.instance)}: {expected}"


def validate(study: dict, source: str = "config") -> dict:
    """Defaults filled, schema and semantic checks; raises ConfigError with one line."""
    study = copy.deepcopy(study)
    errors = sorted(_Validator(schema()).iter_errors(study), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{source}: {_describe(errors[0])}")
    _check_semantics(study, source)
    return study


def _check_semantics(study: dict, source: str):
    # Importing rom.hifi.problems runs rom/hifi/__init__.py, which registers every problem.
    from rom.hifi.problems import PROBLEMS

    name = study["problem"]["name"]
    if name not in PROBLEMS:
        raise ConfigError(f"{source}: problem.name = {json.dumps(name)}: expected one of {sorted(PROBLEMS)}")
    _check_problem_arguments(study["problem"], PROBLEMS[name], source)
    try:
        problem_names = parameter_space(study)[0]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: problem: {exc}") from None
    for pname, spec in study["parameters"].items():
        if pname not in problem_names:
            raise ConfigError(f"{source}: parameters.{pname}: unknown parameter of problem {name}; "
                              f"expected one of {problem_names}")
        lo, hi = spec["bounds"]
        if not lo < hi:
            raise ConfigError(f"{source}: parameters.{pname}.bounds = {[lo, hi]}: expected lower < upper")
        if spec["distribution"] == "loguniform" and lo <= 0:
            raise ConfigError(f"{source}: parameters.{pname}.bounds = {[lo, hi]}: loguniform expects lower > 0")
    design = study["design"]
    if design["method"] == "list":
        if "file" not in design:
            raise ConfigError(f"{source}: design.file: missing; expected a CSV path for method list")
        if not Path(design["file"]).is_file():
            raise ConfigError(f"{source}: design.file = {json.dumps(design['file'])}: file not found")
    if design["train"]["size"] < 1 and design["method"] not in ("grid", "list"):
        raise ConfigError(f"{source}: design.train.size = {design['train']['size']}: expected a value >= 1")


def _check_problem_arguments(spec: dict, cls, source: str):
    """Problem keys are the constructor's keyword arguments (mesh.n becomes mesh_n)."""
    import inspect

    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "mesh_n")]
    for key in spec:
        if key not in ("name", "mesh") and key not in accepted:
            raise ConfigError(f"{source}: problem.{key}: unknown key for problem {spec['name']}; "
                              f"expected one of: name, mesh, {', '.join(accepted)}")


def make_problem(study: dict):
    from rom.hifi.problems import make_problem as _make

    return _make(study["problem"])


def parameter_space(study: dict):
    """(names, bounds (d, 2), distributions) of the study: the problem's defaults overridden by
    the config's `parameters` section."""
    problem = make_problem(study)
    names = list(problem.parameter_names)
    bounds = np.array(problem.default_bounds, dtype=float)
    dists = ["uniform"] * len(names)
    for i, n in enumerate(names):
        if n in study.get("parameters", {}):
            bounds[i] = study["parameters"][n]["bounds"]
            dists[i] = study["parameters"][n].get("distribution", "uniform")
    return names, bounds, dists


def load(path: str | Path) -> dict:
    """Read and validate one study file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: study file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of study settings at the top level")
    return validate(raw, str(path))


def studies(config: dict, source: str = "config") -> dict[str, dict]:
    """All studies of one invocation, by name: the config itself, its include_studies, and the
    sweep points of each (rom.sweeps)."""
    main = validate(config, source)
    includes, main["include_studies"] = main["include_studies"], []
    out = {main["name"]: main}
    for path in includes:
        extra = load(path)
        extra["include_studies"] = []  # one level: included studies do not include further ones
        if extra["name"] in out:
            raise ConfigError(f"{path}: name = {json.dumps(extra['name'])}: expected a study name not used twice")
        out[extra["name"]] = extra
    from rom.sweeps import with_sweeps  # each sweep point becomes a derived study

    return with_sweeps(out, source)


def digest(section) -> str:
    """Stable short hash of a config section (recorded in artefacts, used as a rerun trigger)."""
    return hashlib.sha256(json.dumps(section, sort_keys=True, default=str).encode()).hexdigest()[:16]


def write_study(study: dict, path: str | Path) -> bool:
    """Write the resolved study file atomically, only when its content changes (so its mtime
    marks real changes). Returns whether it was written."""
    from rom.artefacts import atomic_path

    path = Path(path)
    text = yaml.safe_dump(study, sort_keys=False)
    if path.is_file() and path.read_text() == text:
        return False
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
    return True
