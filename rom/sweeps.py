"""Parameter studies from config files: a study's `sweeps` section (dotted keys -> lists of values)
expands into derived studies, one per combination, each validated like a study of its own.

Derived studies whose full-order settings equal those of an earlier study share its full-order
artefacts (`fom_sources`): a sweep over pod.tol solves the full-order model once, not per point."""
from __future__ import annotations

import copy
import itertools
import json
import re

from rom.errors import ConfigError
from rom.paths import digest

FOM_SECTIONS = ("problem", "parameters", "design", "simulate", "seed")
_RESERVED = ("name", "description", "include_studies", "sweeps")


def points(sweeps: dict) -> list[dict]:
    """Every combination of the swept values, in the order the keys are written (none without keys)."""
    keys = list(sweeps)
    if not keys:
        return []
    return [dict(zip(keys, values)) for values in itertools.product(*(sweeps[k] for k in keys))]


def _label(value) -> str:
    text = f"{value:g}" if isinstance(value, float) else json.dumps(value) if isinstance(value, (list, dict)) \
        else str(value)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "_"


def point_name(parent: str, point: dict) -> str:
    """<parent>-<key><value>-...: the last part of each key, the full key where that is ambiguous."""
    last = [k.split(".")[-1] for k in point]
    keys = [k if last.count(k.split(".")[-1]) > 1 else k.split(".")[-1] for k in point]
    return "-".join([parent] + [f"{k}{_label(v)}" for k, v in zip(keys, point.values())])


def _assign(study: dict, key: str, value, source: str):
    *path, leaf = key.split(".")
    if path[0] in _RESERVED:
        raise ConfigError(f"{source}: sweeps.{key}: cannot sweep {path[0]}; expected a key of a settings section")
    node = study
    for part in path:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{source}: sweeps.{key}: {part} is not a section; expected a dotted path to a setting")
    node[leaf] = copy.deepcopy(value)


def derived(study: dict, source: str = "config") -> dict[str, tuple[dict, dict]]:
    """Derived studies of one study before validation: name -> (study, point)."""
    out = {}
    for point in points(study.get("sweeps", {})):
        name = point_name(study["name"], point)
        label = ", ".join(f"{k}={json.dumps(v)}" for k, v in point.items())
        child = copy.deepcopy(study)
        child.update(name=name, sweeps={}, include_studies=[])
        child["description"] = f"{study.get('description', '')} [sweep point {label}]".strip()
        for key, value in point.items():
            _assign(child, key, value, source)
        if name in out:
            raise ConfigError(f"{source}: sweeps: two points are both named {name}; expected distinct values")
        out[name] = (child, point)
    return out


def expand(study: dict, validate, source: str = "config") -> dict[str, tuple[dict, dict]]:
    """Derived studies of one validated study, each validated by `validate(study, source)`:
    name -> (study, point). Raises ConfigError naming the sweep point when one is not valid."""
    out = {}
    for name, (child, point) in derived(study, source).items():
        label = ", ".join(f"{k}={json.dumps(v)}" for k, v in point.items())
        out[name] = (validate(child, f"{source}: sweeps point {label}"), point)
    return out


def with_sweeps(studies: dict[str, dict], validate, source: str = "config") -> dict[str, dict]:
    """The studies of one invocation followed by the derived studies of their sweeps."""
    out = dict(studies)
    for name, study in studies.items():
        for child, (validated, _) in expand(study, validate, f"{source} (study {name})").items():
            if child in out:
                raise ConfigError(f"{source}: sweep point {child} of study {name}: the name is already a study; "
                                  "expected study names that differ from <name>-<key><value>")
            out[child] = validated
    return out


def families(studies: dict[str, dict]) -> dict[str, tuple[str, dict]]:
    """derived study -> (parent, point), for every derived study among `studies`."""
    return {child: (name, point) for name, study in studies.items()
            for child, (_, point) in derived(study, name).items() if child in studies}


def fom_digest(study: dict) -> str:
    return digest([study.get(s) for s in FOM_SECTIONS])


def fom_sources(studies: dict[str, dict]) -> dict[str, str]:
    """study -> the earlier study whose full-order artefacts it reuses (same full-order settings);
    studies that compute their own are absent."""
    first, out = {}, {}
    for name, study in studies.items():
        owner = first.setdefault(fom_digest(study), name)
        if owner != name:
            out[name] = owner
    return out
