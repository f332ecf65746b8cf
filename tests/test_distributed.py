"""Scale-out on Dask: identical outputs to the in-process run, a killed worker, --resume, one-line errors.

One 2-worker LocalCluster (made by the code path of ``--workers 2``) serves the identity tests through its
scheduler address; a `dask scheduler` with two `dask worker` processes on 127.0.0.1 serves the kill test.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lmhtc.compiler.artifact import save_artifact
from lmhtc.compiler.distributed import (ArtifactRef, artifact_ref, check_workers, dask_client, run_job, run_sharded,
                                        worker_info)
from lmhtc.compiler.errors import LmhtcError
from lmhtc.compiler.frontends import trace_to_ir
from lmhtc.compiler.jobs import Simulate
from lmhtc.compiler.passes.quantize import quantize
from lmhtc.compiler.pipeline import compile_graphs
from lmhtc.compiler.sources import open_inputs
from conftest import assert_one_line_error, cli
from nets import TinyResNet, randomize

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def art(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dask")
    graphs = compile_graphs(trace_to_ir(randomize(TinyResNet(2, 2), 4), (2, 8, 8)))
    graphs["integer"] = quantize(graphs["compiled"])
    save_artifact(tmp / "a.lmhtc", graphs)
    rng = np.random.default_rng(1)
    np.savez(tmp / "x.npz", x=rng.normal(size=(44, 2, 8, 8)).astype(np.float32), y=rng.integers(0, 3, 44))
    np.savez(tmp / "big.npz", x=rng.normal(size=(48, 2, 8, 8)).astype(np.float32))
    return tmp


@pytest.fixture(scope="module")
def dask_procs(art):
    """`dask scheduler` + two `dask worker` processes (own sessions, so a kill takes the nanny too)."""
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    kw = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    sched = subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], **kw)
    workers = [subprocess.Popen([BIN / "dask", "worker", addr, "--nthreads", "1", "--no-dashboard",
                                 "--name", f"w{i}", "--death-timeout", "60"], **kw) for i in range(2)]
    yield addr, workers
    for p in (*workers, sched):
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


@pytest.fixture(scope="module")
def local(dask_procs):
    """A 2-worker LocalCluster as ``--workers 2`` makes it; its scheduler address."""
    with dask_client(workers=2) as client:
        yield client.scheduler.address


def _npz(path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def _assert_same_npz(a, b):
    ra, rb = _npz(a), _npz(b)
    assert list(ra) == list(rb)
    for k in ra:
        assert ra[k].dtype == rb[k].dtype and np.array_equal(ra[k], rb[k]), k


@pytest.mark.parametrize("mode", ["int", "float"])
def test_simulate_on_local_cluster_is_identical(art, local, mode):
    base = ["simulate", art / "a.lmhtc", "--inputs", art / "x.npz", "--mode", mode, "--batch-size", "8",
            "--no-progress"]
    code, out = cli(*base, "-o", art / f"in_{mode}.npz")
    assert code == 0, out
    where = ["--workers", "2"] if mode == "int" else ["--scheduler", local]    # --workers: its own LocalCluster
    code, out2 = cli(*base, "-o", art / f"dask_{mode}.npz", *where)
    assert code == 0, out2
    _assert_same_npz(art / f"in_{mode}.npz", art / f"dask_{mode}.npz")
    assert out.splitlines()[-1] == out2.splitlines()[-1] and out.splitlines()[-1].startswith("accuracy:")


def test_directory_of_shards_and_npy_inputs_give_the_same_output(art, local):
    with np.load(art / "x.npz") as f:
        x, y = f["x"], f["y"]
    (art / "parts").mkdir(exist_ok=True)
    for i, (a, b) in enumerate([(0, 10), (10, 11), (11, 44)]):      # shard borders off the batch borders
        np.savez(art / "parts" / f"p{i}.npz", x=x[a:b], y=y[a:b])
    np.save(art / "x.npy", x)
    base = ["simulate", art / "a.lmhtc", "--mode", "int", "--batch-size", "8", "--no-progress"]
    assert cli(*base, "--inputs", art / "x.npz", "-o", art / "ref.npz")[0] == 0
    code, out = cli(*base, "--inputs", art / "parts", "-o", art / "parts.npz", "--scheduler", local)
    assert code == 0 and "accuracy:" in out, out
    code, out = cli(*base, "--inputs", art / "x.npy", "-o", art / "npy.npz", "--scheduler", local)
    assert code == 0 and "accuracy:" not in out, out
    _assert_same_npz(art / "ref.npz", art / "parts.npz")
    _assert_same_npz(art / "ref.npz", art / "npy.npz")


def test_python_api_run_sharded(art, local):
    ref = run_sharded(art / "a.lmhtc", art / "x.npz", "float", 8)
    got = run_sharded(art / "a.lmhtc", art / "x.npz", "float", 8, scheduler=local, limit=24)   # whole batches
    assert set(got) == {"logits", "outputs", "spike_counts", "layer_names"} and got["logits"].shape[0] == 24
    assert np.array_equal(got["logits"], ref["logits"][:24]) and np.array_equal(got["outputs"], ref["outputs"][:, :24])
    with pytest.raises(LmhtcError, match="mode must be int or float"):
        run_sharded(art / "a.lmhtc", art / "x.npz", "half", 8)
    # the same through the Python API: Artifact.simulate(..., scheduler=) equals its in-process run
    import lmhtc

    artifact = lmhtc.load(art / "a.lmhtc")
    with np.load(art / "x.npz") as f:
        x = f["x"]
    here = artifact.simulate(x, mode="int", batch_size=8)
    there = artifact.simulate(art / "x.npz", mode="int", batch_size=8, scheduler=local)
    for key in ("logits_int", "outputs_int", "spike_counts", "sops", "saturation"):
        np.testing.assert_array_equal(getattr(there, key), getattr(here, key), err_msg=key)
    with pytest.raises(LmhtcError, match="pass a path"):
        artifact.simulate(x, scheduler=local)


def test_report_verify_sweep_exactness_on_local_cluster_are_identical(art, local):
    for cmd, extra in (("report", ["--mode", "int", "--batch-size", "4"]),
                       ("report", ["--mode", "float", "--batch-size", "16"]),
                       ("verify", ["--targets", "float,int,onnx,onnx-int", "--batch-size", "8"]),
                       ("sweep", ["--bits", "4,8", "--batch-size", "16", "--calib", art / "x.npz", "--calib-limit", "16"]),
                       ("exactness", ["--batch-size", "8"])):
        docs = []
        for i, where in enumerate(([], ["--scheduler", local])):
            code, out = cli(cmd, art / "a.lmhtc", "--inputs", art / "x.npz", "--json", art / f"{cmd}{i}.json",
                            "--no-progress", *extra, *where)
            assert code == 0, out
            docs.append(json.loads((art / f"{cmd}{i}.json").read_text()))
        if cmd == "verify":     # wall-clock times differ from run to run; everything else must not
            assert set(docs[0]["seconds"]) == set(docs[1]["seconds"]) == {"float", "int", "onnx", "onnx-int"}
            for d in docs:
                d.pop("seconds")
            assert all(p["bit_exact"] for p in docs[0]["pairs"] if p["required_bit_exact"])
        elif cmd == "report":
            assert docs[0]["totals"]["sops_per_image"] > 0
        elif cmd == "sweep":
            assert [r["setting"] for r in docs[0]["rows"]] == ["4-bit weights", "8-bit weights", "widest"]
        else:
            assert docs[0]["images"] == 44 and set(docs[0]["other_schedules"]) == {"uniform"}
        assert docs[0] == docs[1], cmd


def test_resume_through_dask_computes_only_missing_shards(art, local, tmp_path):
    src = open_inputs(art / "x.npz")          # 44 images, batch 4: 11 shards
    job = Simulate("int", "integer")
    ref_rec, _ = run_job(job, art / "a.lmhtc", src, 4)
    done = []

    def interrupt(i):
        done.append(i)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(job, art / "a.lmhtc", src, 4, scheduler=local, resume=tmp_path, on_shard=interrupt)
    files = sorted(tmp_path.glob("shard-*.npz"))
    assert len(files) == 3
    stamps = {f.name: f.stat().st_mtime_ns for f in files}
    rec, stats = run_job(job, art / "a.lmhtc", src, 4, scheduler=local, resume=tmp_path)
    assert (stats.shards, stats.reused, stats.computed) == (11, 3, 8)
    assert all(f.stat().st_mtime_ns == stamps[f.name] for f in files)
    assert len(list(tmp_path.glob("shard-*.npz"))) == 11
    for k, v in ref_rec.items():
        assert np.array_equal(v, rec[k]) if isinstance(v, np.ndarray) else v == rec[k], k


def test_interrupted_cli_run_leaves_no_output_and_resumes(art, tmp_path, monkeypatch):
    calls = []
    real = Simulate.run

    def counted(self, *args):
        calls.append(1)
        if stop_after is not None and len(calls) > stop_after:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(Simulate, "run", counted)
    args = ["simulate", art / "a.lmhtc", "--inputs", art / "x.npz", "--mode", "int", "--batch-size", "5",
            "--no-progress", "--resume", tmp_path / "shards"]
    stop_after = 4
    code, out = cli(*args, "-o", tmp_path / "out.npz")
    assert code != 0 and not (tmp_path / "out.npz").exists()
    assert len(list((tmp_path / "shards").glob("shard-*.npz"))) == 4
    calls.clear()
    stop_after = None
    code, out = cli(*args, "-o", tmp_path / "out.npz")
    assert code == 0, out
    assert "resume: 4 of 9 shards from" in out and "computed 5" in out and len(calls) == 5
    code, _ = cli(*args[:-2], "-o", tmp_path / "plain.npz")
    assert code == 0
    _assert_same_npz(tmp_path / "plain.npz", tmp_path / "out.npz")


def test_killed_worker_shard_reruns_and_output_is_identical(art, dask_procs, tmp_path):
    from distributed import Client

    addr, workers = dask_procs
    with Client(addr, timeout=60) as c:
        c.wait_for_workers(2, timeout=120)
    # batches of 1: 48 shards, so the run is still going when the first few have finished (the kill lands mid-run)
    common = [art / "a.lmhtc", "--inputs", art / "big.npz", "--mode", "int", "--batch-size", "1"]
    code, out = cli("simulate", *common, "-o", tmp_path / "ref.npz", "--no-progress")
    assert code == 0, out
    proc = subprocess.Popen([BIN / "lmhtc", "simulate", *map(str, common), "-o", str(tmp_path / "dask.npz"),
                             "--scheduler", addr, "--progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, killed_at, deadline = b"", None, time.monotonic() + 120
    while killed_at is None and time.monotonic() < deadline:
        chunk = os.read(proc.stderr.fileno(), 4096)
        if not chunk:
            break
        seen += chunk
        counts = [int(m) for m in re.findall(rb"(\d+)/48", seen)]
        if counts and 2 <= counts[-1] < 40:
            os.killpg(workers[0].pid, signal.SIGKILL)
            killed_at = counts[-1]
    out, err = proc.communicate(timeout=180)
    assert killed_at is not None, (seen + err).decode(errors="replace")[-2000:]
    assert proc.returncode == 0, (out + err).decode(errors="replace")[-2000:]
    assert workers[0].wait(timeout=10) is not None
    _assert_same_npz(tmp_path / "ref.npz", tmp_path / "dask.npz")


def test_unreachable_scheduler_is_one_line_error(art, monkeypatch, tmp_path):
    monkeypatch.setenv("LMHTC_DASK_TIMEOUT", "2")
    t0 = time.monotonic()
    code, out = cli("simulate", art / "a.lmhtc", "--inputs", art / "x.npz", "-o", tmp_path / "o.npz",
                    "--no-progress", "--scheduler", f"tcp://127.0.0.1:{_free_port()}")
    assert_one_line_error(code, out, "--scheduler tcp://127.0.0.1:", "cannot reach the Dask scheduler within 2 s")
    assert time.monotonic() - t0 < 30 and not (tmp_path / "o.npz").exists()


def test_bad_flags_are_one_line_errors(art, tmp_path):
    base = ["simulate", art / "a.lmhtc", "--inputs", art / "x.npz", "-o", tmp_path / "o.npz", "--no-progress"]
    assert_one_line_error(*cli(*base, "--workers", "0"), "--workers must be >= 1")
    assert_one_line_error(*cli(*base, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"), "exclude each other")
    assert_one_line_error(*cli("verify", art / "a.lmhtc", "--inputs", art / "x.npz", "--targets", "int,lava",
                               "--workers", "2"), "--targets lava cannot run on Dask workers")
    (tmp_path / "f").write_text("")
    assert_one_line_error(*cli(*base, "--resume", tmp_path / "f"), "--resume needs a directory")


def test_artifact_unreadable_or_different_on_workers(art, local):
    src = open_inputs(art / "x.npz")
    real = artifact_ref(art / "a.lmhtc")
    with pytest.raises(LmhtcError, match=r"Dask worker tcp://.*: /nonexistent/a.lmhtc: artifact not readable here"):
        run_job(Simulate("int", "integer"), ArtifactRef("/nonexistent/a.lmhtc", real.sha256), src, 8, scheduler=local)
    with pytest.raises(LmhtcError, match="artifact checksum .* differs from the client's"):
        run_job(Simulate("int", "integer"), ArtifactRef(real.path, "0" * 64), src, 8, scheduler=local)


def test_worker_that_cannot_import_lmhtc_is_one_line_error(art, tmp_path):
    from distributed import Client

    script = tmp_path / "worker.py"
    script.write_text("import sys\nsys.modules['lmhtc'] = None   # this worker cannot import lmhtc\n"
                      "from distributed.cli.dask_worker import main\n"
                      "sys.argv = ['dask-worker', *sys.argv[1:]]\nmain()\n")
    port = _free_port()
    addr = f"tcp://127.0.0.1:{port}"
    kw = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs = [subprocess.Popen([BIN / "dask", "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], **kw)]
    try:
        procs.append(subprocess.Popen([sys.executable, script, addr, "--nthreads", "1", "--no-dashboard",
                                       "--no-nanny", "--death-timeout", "60"], **kw))
        with Client(addr, timeout=60) as c:
            c.wait_for_workers(1, timeout=120)
        code, out = cli("simulate", art / "a.lmhtc", "--inputs", art / "x.npz", "-o", tmp_path / "o.npz",
                        "--no-progress", "--scheduler", addr)
        assert_one_line_error(code, out, "Dask worker tcp://127.0.0.1:", "cannot run lmhtc",
                              "No module named 'lmhtc.compiler'")
        assert not (tmp_path / "o.npz").exists()
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def test_worker_versions_are_checked():
    here = worker_info()
    check_workers({"tcp://a:1": here["lmhtc"]}, {"tcp://a:1": here})           # matching: no error
    with pytest.raises(LmhtcError, match="worker tcp://a:1 has no lmhtc installed"):
        check_workers({"tcp://a:1": ModuleNotFoundError("No module named 'lmhtc'")}, None)
    with pytest.raises(LmhtcError, match="worker tcp://a:1 runs lmhtc 0.0.9, this client"):
        check_workers({"tcp://a:1": "0.0.9"}, None)
    with pytest.raises(LmhtcError, match="integer semantics version 2, this client 1"):
        check_workers({"tcp://a:1": here["lmhtc"]}, {"tcp://a:1": {**here, "semantics": 2}})
