"""Persistent black-box workers (problem.persistent, romflow/worker.py): the same snapshots as one process
per sample, bit for bit (the library and the Snakemake pipeline, with the scikit-fem worker
examples/blackbox/skfem_block.py --serve); a sample whose solve raises fails with its reason while the
others are solved; a worker that dies mid-chunk is restarted once and the chunk completes; a second
death, a timeout and a garbage reply are failed samples with their reason; a worker runs under the MPI
launcher (requests broadcast to every rank); bad settings are refused."""
import time

import numpy as np
import pytest

import gmsh_meshes
from conftest import ROOT, run, write_yaml
from rom.hifi.registry import make_problem

SNAKEMAKE = [ROOT / ".venv" / "bin" / "snakemake"] if (ROOT / ".venv" / "bin" / "snakemake").exists() else ["snakemake"]
SKFEM = ROOT / "examples" / "blackbox" / "skfem_block.py"
MUS = np.array([[1.0, 0.5], [3.0, 1.5], [0.2, 2.0], [5.0, 0.7]])

# A worker written with romflow.worker.serve: u = mu_0 + mu_1 * (node index); raises at mu_0 = 13, exits
# (status 9) at its request number DIE unless a marker file says it died before, hangs at mu_0 = 66,
# prints on stdout (fd 1 and sys.stdout) at mu_0 = 77.
TOY = f"""
import os, sys, time
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from romflow.worker import serve
N, DIE, MARK = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
count = [0]
def solve(mu):
    count[0] += 1
    if count[0] == DIE and (MARK == "always" or not os.path.exists(MARK)):
        if MARK != "always":
            open(MARK, "w").close()
        print("worker: dying on purpose", file=sys.stderr)
        os._exit(9)
    if mu[0] == 13:
        raise ValueError("kappa = 13 is unlucky")
    if mu[0] == 66:
        time.sleep(60)
    if mu[0] == 77:
        os.write(1, b"a C library's print\\n")  # fd 1 is stderr while serve runs
        print("a Python print, on stderr too")
    return {{"u": mu[0] + mu[1] * np.arange(N, dtype=float), "iterations": 3}}
serve(solve)
"""

GARBAGE = """
import sys
for line in sys.stdin:
    if not line.strip():
        break
    sys.stdout.write("Solving... done\\n")
    sys.stdout.flush()
"""


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    return gmsh_meshes.square(tmp_path_factory.mktemp("bbw") / "square.msh", 0.2)


def problem(square, command, **kw):
    return make_problem({"name": "external", "command": command, "parameters": ["a", "b"],
                         "mesh": {"file": str(square)}, **kw})


def test_persistent_worker_gives_the_one_shot_snapshots_bit_for_bit(square):
    pytest.importorskip("skfem")
    once = problem(square, f"{{python}} {SKFEM} --mu {{mu}} --mesh {{mesh}} --out {{out}}")
    kept = problem(square, f"{{python}} {SKFEM} --mesh {{mesh}} --serve", persistent=True)
    ref = [once.run(mu) for mu in MUS]
    with kept.session():
        got = [kept.run(mu) for mu in MUS]
        assert kept._session.starts == 1 and kept._session.requests == len(MUS)
    for r, g in zip(ref, got):
        assert r.converged and g.converged and g.reason == r.reason == "SKFEM_SPSOLVE"
        assert np.array_equal(r.u, g.u)
    assert not np.allclose(got[0].u, got[1].u)
    # outside a session a persistent black box still answers, with a worker of its own for the sample
    assert np.array_equal(kept.run(MUS[1]).u, ref[1].u)


def test_a_sample_that_raises_fails_with_its_reason_the_others_are_solved(square, tmp_path):
    (tmp_path / "toy.py").write_text(TOY)
    p = problem(square, f"{{python}} {tmp_path}/toy.py 9999 0 never", persistent=True)
    n = p.mesh.n_nodes
    p.command = f"{{python}} {tmp_path}/toy.py {n} 0 never"
    with p.session():
        out = [p.run(mu) for mu in ([1.0, 2.0], [13.0, 1.0], [2.0, 0.5], [77.0, 1.0])]
        assert p._session.starts == 1  # the exception did not end the worker
    assert [s.converged for s in out] == [True, False, True, True]
    assert out[1].reason == "ValueError: kappa = 13 is unlucky" and out[1].u is None
    np.testing.assert_array_equal(out[2].u, 2.0 + 0.5 * np.arange(n))
    assert out[0].iterations == 3
    np.testing.assert_array_equal(out[3].u, 77.0 + np.arange(n))  # prints went to stderr


def test_a_worker_that_dies_mid_chunk_is_restarted_once(square, tmp_path):
    (tmp_path / "toy.py").write_text(TOY)
    p = problem(square, "{python} toy.py", persistent=True)
    n = p.mesh.n_nodes
    p.command = f"{{python}} {tmp_path}/toy.py {n} 3 {tmp_path}/died"
    with p.session():
        out = [p.run([float(k), 1.0]) for k in range(6)]
        assert p._session.starts == 2
    assert all(s.converged for s in out), [s.reason for s in out]
    for k, s in enumerate(out):
        np.testing.assert_array_equal(s.u, k + np.arange(n, dtype=float))
    # a worker that dies every time: one restart, then the chunk's remaining samples fail with the reason
    p.command = f"{{python}} {tmp_path}/toy.py {n} 2 always"
    with p.session():
        out = [p.run([float(k), 1.0]) for k in range(5)]
        assert p._session.starts == 2
    # sample 1 killed the first worker and was retried on the second, which sample 2 killed in turn
    assert [s.converged for s in out] == [True, True, False, False, False]
    assert out[2].reason.startswith("WORKER_EXIT_9: the worker ended before replying: ")
    assert "dying on purpose" in out[2].reason and "no restart left" in out[2].reason
    assert all(s.reason == out[2].reason for s in out[3:])


def test_timeouts_and_garbage_replies_are_failed_samples(square, tmp_path):
    (tmp_path / "toy.py").write_text(TOY)
    (tmp_path / "garbage.py").write_text(GARBAGE)
    p = problem(square, "{python} toy.py", persistent=True, timeout=10)
    n = p.mesh.n_nodes
    p.command = f"{{python}} {tmp_path}/toy.py {n} 0 never"
    with p.session():
        assert p.run([1.0, 1.0]).converged  # the worker's start (imports) within the first request's timeout
        p.timeout = 1.0
        t0 = time.perf_counter()
        hung = p.run([66.0, 1.0])
        assert time.perf_counter() - t0 < 10
        assert not hung.converged and hung.reason.startswith("TIMEOUT: the worker gave no reply after 1 s")
        p.timeout = 10.0
        assert p.run([2.0, 1.0]).converged and p._session.starts == 2  # restarted for the next sample
    p.command = f"{{python}} {tmp_path}/garbage.py"
    with p.session():
        s = p.run([1.0, 1.0])
    assert not s.converged and s.reason.startswith("BAD_REPLY: 'Solving... done' is not a reply line")


def test_persistent_settings_are_refused_in_one_line(square):
    from rom import config

    bounds = {"a": {"bounds": [0.5, 4.0]}, "b": {"bounds": [0.3, 0.7]}}
    base = {"name": "external", "parameters": ["a", "b"], "mesh": {"file": str(square)}, "persistent": True}
    config.validate({"name": "s", "problem": {**base, "command": "{python} x.py --mesh {mesh}"},
                     "parameters": bounds}, "s.yaml")
    for extra, part in (({"command": "{python} x.py --mu {mu} --out {out}"}, "persistent: true with {mu} in command"),
                        ({"command": "{python} x.py --a {a}"}, "persistent: true with {a} in command"),
                        ({"command": "{python} x.py", "matrices": True}, "persistent: true with matrices: true"),
                        ({"command": "{python} x.py", "persistent": "yes"}, "persistent")):
        with pytest.raises(config.ConfigError) as err:
            config.validate({"name": "s", "problem": {**base, **extra}, "parameters": bounds}, "s.yaml")
        assert part in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.pipeline
def test_persistent_study_gives_the_one_shot_snapshots_through_snakemake(tmp_path):
    pytest.importorskip("skfem")
    import xarray as xr

    script = "{python} {root}/examples/blackbox/skfem_block.py"
    snaps, chunks = {}, {}
    for name, extra in (("oneshot", {"command": f"{script} --mu {{mu}} --mesh {{mesh}} --out {{out}}"}),
                        ("kept", {"command": f"{script} --mesh {{mesh}} --serve", "persistent": True})):
        d = tmp_path / name
        d.mkdir()
        study = {"name": name, "problem": {
            "name": "external", "parameters": ["k_core", "k_shell"], **extra,
            "mesh": {"file": "meshes/square.msh",
                     "generate": "{python} {root}/examples/meshes/square.py {file} --size 0.15"}},
            "parameters": {"k_core": {"bounds": [0.1, 10.0]}, "k_shell": {"bounds": [0.5, 2.0]}},
            "design": {"method": "lhs", "train": {"size": 5, "seed": 1}, "test": {"size": 2, "seed": 2}},
            "simulate": {"chunk_size": 3}}
        write_yaml(d / f"{name}.yaml", study)
        run([*SNAKEMAKE, "-s", ROOT / "Snakefile", "-d", d, "--configfile", d / f"{name}.yaml", "--cores", "2",
             f"results/{name}/snapshots/train.h5"], timeout=300)
        snaps[name] = xr.open_dataset(d / "results" / name / "snapshots" / "train.h5")
        chunks[name] = [xr.open_dataset(d / "results" / name / "snapshots" / "train" / f"chunk{i}.h5").attrs
                         for i in range(2)]
    a, b = snaps["oneshot"], snaps["kept"]
    assert a["converged"].values.all() and b["converged"].values.all()
    np.testing.assert_array_equal(a["mu"].values, b["mu"].values)
    assert np.array_equal(a["u"].values, b["u"].values)  # bit for bit
    # one worker per chunk (3 + 2 samples); none for the one-shot study
    assert [(c["worker_starts"], c["worker_requests"]) for c in chunks["kept"]] == [(1, 3), (1, 2)]
    assert "worker_starts" not in chunks["oneshot"][0]


MPI_TOY = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from mpi4py import MPI
from romflow.worker import serve
comm, N = MPI.COMM_WORLD, int(sys.argv[1])
def solve(mu):
    total = comm.allreduce(mu[0] * (comm.rank + 1))  # every rank takes part in every request
    print("rank", comm.rank, "solved")  # on stderr: serve keeps stdout for the protocol
    return {{"u": total + mu[1] * np.arange(N, dtype=float), "iterations": comm.size}}
serve(solve)
"""


def test_a_persistent_worker_runs_under_the_mpi_launcher(square, tmp_path):
    pytest.importorskip("mpi4py")
    (tmp_path / "mpi_toy.py").write_text(MPI_TOY)
    p = problem(square, "{python} toy.py", persistent=True, launcher="mpiexec -n {ranks}", timeout=120)
    n = p.mesh.n_nodes
    p.command = f"{{python}} {tmp_path}/mpi_toy.py {n}"
    with p.session(ranks=2):
        out = [p.run(mu, 2) for mu in ([1.0, 0.5], [2.0, 1.0])]
        assert p._session.starts == 1
    assert all(s.converged for s in out), [s.reason for s in out]
    assert [s.iterations for s in out] == [2, 2]  # both ranks served: the request reached rank 1 too
    np.testing.assert_array_equal(out[1].u, 2.0 * 3 + np.arange(n))
