"""Problem classes by import path: a class that breaks its contract or a module that does not import is
refused in one line before any job (tests/test_byo_pipeline.py runs a plugin through Snakemake)."""
import textwrap

import pytest

from conftest import ROOT, run, write_yaml
from rom import config

SNAKEMAKE = [ROOT / ".venv" / "bin" / "snakemake"] if (ROOT / ".venv" / "bin" / "snakemake").exists() else ["snakemake"]

PLUGIN = '''
"""A user's problem: -div(a grad u) = b on the unit square, u = 0 on the boundary; mu = (a, b)."""
import numpy as np

from rom.hifi import capabilities as cap
from rom.hifi.discretization import fem
from rom.hifi.capabilities import ParameterSpace
from rom.hifi.discretization.mesh import unit_square
from rom.hifi.problems import Problem


class ScaledPoisson(Problem):
    name = "scaled_poisson"
    capabilities = frozenset({cap.PARAMETERS, cap.MESH, cap.STATIONARY, cap.AFFINE})
    arguments = {"n": {"type": "integer", "minimum": 2, "default": 10}}

    def __init__(self, n=10):
        super().__init__(unit_square(n))

    @classmethod
    def from_arguments(cls, args):
        return cls(**args)

    @classmethod
    def parameter_space(cls, args):
        return ParameterSpace(("a", "b"), [[0.5, 2.0], [1.0, 3.0]], [[0, np.inf], [-np.inf, np.inf]])

    def operator_terms(self, pattern):
        return pattern.assemble(fem.stiffness_local(self.mesh))[None]

    def theta(self, mu):
        return np.atleast_2d(mu)[:, :1]

    def rhs_terms(self, pattern):
        return pattern.assemble_vector(self.mesh, fem.load_local(self.mesh, 1.0))[None]

    def phi(self, mu):
        return np.atleast_2d(mu)[:, 1:2]
'''


def snakemake(workdir, *args, check=True):
    return run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", workdir, "--configfile", workdir / "study" / "cfg.yaml",
                *args], check=check, timeout=600)


def plugin_study(workdir, **problem):
    (workdir / "study").mkdir(exist_ok=True)
    (workdir / "study" / "my_heat.py").write_text(textwrap.dedent(PLUGIN))
    # `name` labels the artefacts (rom.artefacts.provenance reads it); `class` chooses the class.
    study = {"name": "plug", "problem": {"name": "scaled_poisson", "class": "my_heat:ScaledPoisson", "n": 10, **problem},
             "design": {"method": "lhs", "train": {"size": 5, "seed": 1}, "test": {"size": 2, "seed": 2}},
             "simulate": {"chunk_size": 5}, "pod": {"tol": 1e-12, "max_modes": 4}}
    return write_yaml(workdir / "study" / "cfg.yaml", study)


def test_broken_plugins_are_refused_in_one_line(tmp_path):
    d = tmp_path / "study"
    d.mkdir()
    (d / "broken.py").write_text(textwrap.dedent(PLUGIN).replace("    def phi(self, mu):", "    def _phi(self, mu):"))
    (d / "typo.py").write_text("import numpy as np\nfrom rom.hifi import capabilitiez\n")
    cases = {
        "broken:ScaledPoisson": "problem.class = 'broken:ScaledPoisson': ScaledPoisson: declares capability 'affine' "
                                "but lacks ['phi']",
        "typo:X": "problem.class = 'typo:X': cannot import typo (ImportError: cannot import name 'capabilitiez'",
        "broken:Nothing": "problem.class = 'broken:Nothing': broken has no class Nothing",
        "not_there:X": "problem.class = 'not_there:X': cannot import not_there (ModuleNotFoundError",
    }
    for path, message in cases.items():
        write_yaml(d / "cfg.yaml", {"name": "b", "problem": {"class": path}})
        with pytest.raises(config.ConfigError) as err:
            config.load(d / "cfg.yaml")
        assert "\n" not in str(err.value) and message in str(err.value), err.value
    # The module beside the study file runs once per version of the file, under a private name.
    from rom.hifi import registry

    write_yaml(d / "cfg.yaml", {"name": "b", "problem": {"class": "ok:ScaledPoisson"}})
    (d / "ok.py").write_text(textwrap.dedent(PLUGIN))
    first = config.problem_class(config.load(d / "cfg.yaml")["problem"])
    assert config.problem_class({"class": "ok:ScaledPoisson"}, base_dir=d) is first
    assert first.__module__.startswith("_romflow_study_ok_") and "ok" not in __import__("sys").modules
    assert any(m.__name__ == first.__module__ for m in registry._LOCAL_MODULES.values())
    # Snakemake refuses it at parse time: no job runs.
    write_yaml(d / "cfg.yaml", {"name": "b", "problem": {"class": "broken:ScaledPoisson"}})
    proc = snakemake(tmp_path, "--cores", "1", check=False)
    assert proc.returncode != 0 and "romflow: config error:" in proc.stderr and "lacks ['phi']" in proc.stderr
    assert not (tmp_path / "results" / "b").exists()
