"""The conda environments of the rules (--sdm conda) name every package their commands import, with the
lower bounds of pyproject.toml."""
import re
from pathlib import Path

import yaml

import imports
from conftest import ROOT
from rom import pipeline

# Import name -> conda-forge package name, where they differ.
CONDA_NAME = {"sklearn": "scikit-learn", "yaml": "pyyaml", "zmq": "pyzmq", "torch": "pytorch", "gmsh": "python-gmsh",
              "matplotlib": "matplotlib-base", "plaid": "pyplaid", "CGNS": "pyplaid"}  # pyCGNS comes with pyplaid
# Needed without an import statement: xarray opens and writes every artefact with this engine.
IMPLICIT = {"h5netcdf"}


def rules() -> dict[str, dict]:
    """rule name -> {'env': env file, 'package': rom|surrogates, 'stage': subcommand} from the rule files."""
    out = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        for block in re.split(r"\n(?=rule \w+:)", text):
            m = re.match(r"rule (\w+):", block)
            if not m:
                continue
            env = re.search(r'conda:\s*\n\s*"([^"]+)"', block)
            cmd = re.search(r'command\("(\w+)"\)', block)
            raw = re.search(r"python -m (rom|surrogates) ([\w-]+)", block)
            if cmd:
                stage = pipeline.STAGES[cmd.group(1)]
                package, name = stage.package, stage.command
            elif raw:
                package, name = raw.group(1), raw.group(2)
            else:
                continue  # e.g. reuse_fom: a symbolic link, no Python
            out[m.group(1)] = {"env": (smk.parent / env.group(1)).resolve(), "package": package, "stage": name}
    return out


def stage_module(package: str, command: str) -> str:
    for s in pipeline.STAGES.values():
        if s.package == package and s.command == command:
            return s.run.__module__
    raise AssertionError(f"no module defines {package} {command}")


def env_packages(path: Path) -> dict[str, str]:
    """name -> version spec of the conda packages and of the pip section's packages."""
    deps = yaml.safe_load(path.read_text())["dependencies"]
    items = [d for d in deps if isinstance(d, str)] + [p for d in deps if isinstance(d, dict) for p in d.get("pip", [])]
    out = {}
    for d in items:
        name = re.split(r"[<>=!]", d, maxsplit=1)[0].strip()
        out[name] = d[len(name):]
    return out


def test_every_rule_env_names_every_import_of_its_command():
    found = rules()
    assert len(found) >= 25, sorted(found)
    for rule, r in found.items():
        assert r["env"].is_file(), (rule, r["env"])
        needed = imports.third_party(stage_module(r["package"], r["stage"]), f"{r['package']}.cli")
        needed = {CONDA_NAME.get(n, n) for n in needed} | IMPLICIT
        have = set(env_packages(r["env"]))
        assert needed <= have, f"rule {rule} ({r['env'].name}) lacks {sorted(needed - have)}"
        pip = [p for d in yaml.safe_load(r["env"].read_text())["dependencies"] if isinstance(d, dict) for p in d["pip"]]
        assert not any(p.startswith("-e") for p in pip), rule  # the project is not installed in the env


def test_env_lower_bounds_match_pyproject():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bounds = {re.split(r"[<>=!]", d, maxsplit=1)[0].strip(): d[len(re.split(r"[<>=!]", d, maxsplit=1)[0].strip()):] for d in project}
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        for name, spec in env_packages(env).items():
            pip_name = {v: k for k, v in CONDA_NAME.items()}.get(name, name)
            pip_name = {"sklearn": "scikit-learn", "yaml": "pyyaml", "zmq": "pyzmq", "gmsh": "gmsh",
                        "matplotlib": "matplotlib"}.get(pip_name, pip_name)
            if pip_name in bounds and bounds[pip_name]:
                assert spec == bounds[pip_name], f"{env.name}: {name}{spec} vs pyproject {pip_name}{bounds[pip_name]}"
