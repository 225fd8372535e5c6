"""The stage flags of `python -m rom` / `python -m surrogates`: a misspelt double-dash flag is refused
(not handed to PETSc), a repeated flag accumulates where the stage declares a list and is refused
otherwise, each in one line on stderr with exit status 2."""
from __future__ import annotations

from conftest import rom_cli
from rom import cli


def one_line_error(proc) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def simulate(study_file, *extra):
    folder = study_file.parent
    return rom_cli("simulate", "--study-config", study_file, "--parameters", folder / "parameters.h5",
                   "--out", folder / "chunk.h5", *extra, check=False)


def test_a_misspelt_flag_is_refused_naming_the_stage_flags(study_file):
    err = one_line_error(simulate(study_file, "--chunks", "1"))
    assert "unknown flag --chunks" in err
    assert "--study-config, --parameters, --operators, --out, --set, --chunk " in err and "one dash" in err
    assert one_line_error(simulate(study_file, "--chunks=1")).startswith(
        "python -m rom simulate: error: unknown flag --chunks;")
    assert not (study_file.parent / "chunk.h5").exists()  # refused before any solve


def test_a_repeated_flag_of_one_value_is_refused(study_file):
    err = one_line_error(simulate(study_file, "--chunk", "0", "--chunk", "1"))
    assert err == "python -m rom simulate: error: --chunk given twice (0, then 1); expected it once"
    assert "--out given twice" in one_line_error(simulate(study_file, "--out", study_file.parent / "other.h5"))
    assert not (study_file.parent / "chunk.h5").exists()


def test_argparse_errors_are_one_line(study_file):
    err = one_line_error(rom_cli("simulate", "--study-config", study_file, "--set", "tain", check=False))
    assert err.startswith("python -m rom simulate: error: argument --set: invalid choice: 'tain'")


def parse(package, *argv):
    args, rest = cli.parser(package).parse_known_args([str(a) for a in argv])
    assert rest == []
    return args


def test_a_repeated_list_flag_accumulates():
    # The documented export of two splits (docs/gp_mmgp.md).
    args = parse("surrogates", "plaid-export", "--study-config", "s.yaml", "--family", "train.h5",
                 "--family", "test.h5", "--out", "plaid")
    assert args.family == ["train.h5", "test.h5"]
    args = parse("surrogates", "evaluate-surrogate", "--study-config", "s.yaml", "--test", "t.h5", "--out", "m.h5",
                 "--models", "fifo=a", "reservoir=b", "--models", "offline=c")
    assert args.models == ["fifo=a", "reservoir=b", "offline=c"]

