"""Run a job over whole batches of the inputs, in-process or on a Dask cluster, and combine the shards.

Shard ``i`` is images ``[i·B, (i+1)·B)`` for batch size ``B``; every shard is
computed by ``job.run`` exactly as the in-process loop computes that batch,
and the records are joined in input order by ``records.combine`` — the one
reduction both paths use — so integer results are bit-identical and float
results identical on identical machines (workers get the client's torch
thread count). On Dask (``workers=N``: a LocalCluster of N processes with one
thread each; ``scheduler=ADDRESS``: a running scheduler; or ``client=``) each
worker loads the artifact once per process (cache keyed by path and SHA-256,
checked against the client's), and reads only its own slice of the inputs.
Before any task runs, every worker must report the client's lmhtc version
and integer semantics version and must read the artifact; every wait has a
timeout. A worker that dies has its shard re-run elsewhere by Dask. With
``resume=DIR`` each finished shard is written atomically to DIR under its
index and a key of (artifact checksum, batch size, job, inputs); a re-run
computes only the missing shards. Nothing is returned, and so nothing is
written by the caller, until every shard is done.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from .errors import LmhtcError
from .frontends.checkpoint import file_sha256
from .jobs import Memo, Simulate
from .records import combine, load_record, save_record
from .sources import InputSource, open_inputs

_TIMEOUTS = (TimeoutError, asyncio.TimeoutError)   # distinct classes on Python 3.10


def default_timeout() -> float:
    """Seconds to wait for the scheduler, for a worker and for the pre-flight checks: $LMHTC_DASK_TIMEOUT or 60."""
    text = os.environ.get("LMHTC_DASK_TIMEOUT", "60")
    try:
        value = float(text)
    except ValueError:
        raise LmhtcError(f"LMHTC_DASK_TIMEOUT must be a number of seconds, got {text!r}") from None
    if value <= 0:
        raise LmhtcError(f"LMHTC_DASK_TIMEOUT must be > 0, got {text!r}")
    return value


@dataclass(frozen=True)
class ArtifactRef:
    """An artifact as workers see it: its path (the same on every machine) and the SHA-256 of its bytes."""

    path: str
    sha256: str


def artifact_ref(path: str | os.PathLike) -> ArtifactRef:
    p = Path(path)
    if not p.is_file():
        raise LmhtcError(f"{p}: no such file")
    return ArtifactRef(str(p.resolve()), file_sha256(p))


_LOADED: dict[ArtifactRef, tuple[dict, Memo]] = {}   # this process's artifacts (a worker keeps the last two)


def loaded(ref: ArtifactRef) -> tuple[dict, Memo]:
    """The graphs of ``ref`` and their memo, loaded once per process; the file must match the checksum."""
    if ref not in _LOADED:
        from .artifact import load_artifact

        try:
            sha = file_sha256(ref.path)
        except OSError as exc:
            raise LmhtcError(f"{ref.path}: artifact not readable here ({exc.strerror or exc})") from None
        if sha != ref.sha256:
            raise LmhtcError(f"{ref.path}: artifact checksum {sha[:12]} differs from the client's "
                             f"{ref.sha256[:12]} (another file at this path)")
        graphs, _ = load_artifact(ref.path)
        while len(_LOADED) >= 2:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[ref] = (graphs, Memo())
    return _LOADED[ref]


def run_shard(job, ref: ArtifactRef, source: InputSource, start: int, stop: int, batch_size: int,
              threads: int | None) -> dict:
    """One shard on a worker: the job's record of images ``[start, stop)``."""
    import torch

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    graphs, memo = loaded(ref)
    return job.run(graphs, source.read(start, stop), batch_size, memo)


def worker_info() -> dict:
    """What a worker runs: lmhtc and integer semantics versions."""
    from . import __version__
    from .intir import SEMANTICS_VERSION

    return {"lmhtc": __version__, "semantics": SEMANTICS_VERSION}


def prepare_worker(ref: ArtifactRef, source: InputSource) -> str:
    """Pre-flight on a worker: load the artifact (into its cache) and read one input image."""
    loaded(ref)
    source.read(0, 1)
    return "ok"


def check_workers(versions: dict, infos: dict | None) -> None:
    """A one-line error naming the first worker without lmhtc or with another lmhtc/semantics version."""
    here = worker_info()
    for addr, v in versions.items():
        if isinstance(v, BaseException):
            raise LmhtcError(f"Dask worker {addr} has no lmhtc installed ({type(v).__name__}: {v})")
        if v != here["lmhtc"]:
            raise LmhtcError(f"Dask worker {addr} runs lmhtc {v}, this client {here['lmhtc']}")
    for addr, info in (infos or {}).items():
        if isinstance(info, BaseException):
            raise LmhtcError(f"Dask worker {addr} cannot run lmhtc ({type(info).__name__}: {info})")
        if info["semantics"] != here["semantics"]:
            raise LmhtcError(f"Dask worker {addr} implements integer semantics version {info['semantics']}, "
                             f"this client {here['semantics']}")


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, client=None,
                timeout: float | None = None):
    """A Dask client: the given one, one connected to ``scheduler``, or one on a new LocalCluster."""
    timeout = default_timeout() if timeout is None else timeout
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            c = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, ValueError, *_TIMEOUTS) as exc:
            raise LmhtcError(f"--scheduler {scheduler}: cannot reach the Dask scheduler within {timeout:g} s "
                             f"({type(exc).__name__}: {exc})") from None
        try:
            yield c
        finally:
            c.close()
        return
    import dask

    # Lava's runtime starts child processes; and Dask's nanny default MALLOC_TRIM_THRESHOLD_ makes glibc hand every
    # large tensor back to the OS and fault it in again (measured: the integer runtime 4x slower on a worker)
    environ = {k: v for k, v in dask.config.get("distributed.nanny.pre-spawn-environ").items()
               if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({"distributed.worker.daemon": False, "distributed.nanny.pre-spawn-environ": environ}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=logging.ERROR)
    try:
        with Client(cluster, set_as_default=False) as c:
            yield c
    finally:
        cluster.close()


def preflight(client, ref: ArtifactRef, source: InputSource, timeout: float | None = None) -> int:
    """Wait for a worker, check every worker's versions and its reading of the artifact; the worker count."""
    import importlib.metadata

    timeout = default_timeout() if timeout is None else timeout
    try:
        client.wait_for_workers(1, timeout=timeout)
    except _TIMEOUTS:
        raise LmhtcError(f"no Dask worker joined the scheduler {client.scheduler.address} within {timeout:g} s") \
            from None
    versions = _within(timeout, "lmhtc version check", client.run, importlib.metadata.version, "lmhtc",
                       on_error="return")
    check_workers(versions, None)
    check_workers(versions, _within(timeout, "lmhtc version check", client.run, worker_info, on_error="return"))
    ready = _within(timeout, f"loading {ref.path} on the workers", client.run, prepare_worker, ref, source,
                    on_error="return")
    for addr, res in ready.items():
        if isinstance(res, BaseException):
            raise LmhtcError(f"Dask worker {addr}: {res}")
    return len(versions)


class ResumeStore:
    """Finished shards in a directory: ``shard-<index>-<key>.npz``, each written atomically."""

    def __init__(self, directory: str | os.PathLike, key: str):
        self.dir = Path(directory)
        if self.dir.exists() and not self.dir.is_dir():
            raise LmhtcError(f"{self.dir}: --resume needs a directory, and this is a file")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = key

    def path(self, index: int) -> Path:
        return self.dir / f"shard-{index:06d}-{self.key[:16]}.npz"

    def load(self, index: int) -> dict | None:
        p = self.path(index)
        if not p.is_file():
            return None
        try:
            return load_record(p)
        except Exception:      # an unreadable file is a missing shard: computed again
            return None

    def save(self, index: int, record: dict) -> None:
        save_record(self.path(index), record)


def shard_key(job, ref: ArtifactRef, source: InputSource, batch_size: int) -> str:
    doc = {"artifact": ref.sha256, "batch_size": batch_size, "job": job.key(), "inputs": source.fingerprint()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass
class RunStats:
    shards: int
    computed: int
    reused: int
    workers: int          # 0: in-process


def run_job(job, artifact: str | os.PathLike | ArtifactRef, source: InputSource, batch_size: int, *,
            workers: int | None = None, scheduler: str | None = None, client=None,
            resume: str | os.PathLike | None = None, progress: bool = False, graphs: dict | None = None,
            timeout: float | None = None, on_shard: Callable[[int], None] | None = None):
    """Run ``job`` over ``source`` in shards of ``batch_size``; (combined record, RunStats). See module doc."""
    if batch_size < 1:
        raise LmhtcError(f"--batch-size must be >= 1, got {batch_size}")
    if workers is not None and workers < 1:
        raise LmhtcError(f"--workers must be >= 1, got {workers}")
    if sum(v is not None for v in (workers, scheduler, client)) > 1:
        raise LmhtcError("--workers and --scheduler exclude each other")
    timeout = default_timeout() if timeout is None else timeout
    ref = artifact if isinstance(artifact, ArtifactRef) else artifact_ref(artifact)
    n = len(source)
    shards = [(i, s, min(s + batch_size, n)) for i, s in enumerate(range(0, n, batch_size))]
    store = None if resume is None else ResumeStore(resume, shard_key(job, ref, source, batch_size))
    records = {}
    if store is not None:
        for i, _, _ in shards:
            rec = store.load(i)
            if rec is not None:
                records[i] = rec
    todo = [s for s in shards if s[0] not in records]
    bar = tqdm(total=n, initial=sum(e - s for i, s, e in shards if i in records), desc=f"{type(job).__name__.lower()}",
               unit="image", disable=not progress)

    def finished(i: int, start: int, stop: int, rec: dict) -> None:
        if store is not None:
            store.save(i, rec)
        records[i] = rec
        bar.update(stop - start)
        if on_shard is not None:
            on_shard(i)

    n_workers = 0
    try:
        if workers is None and scheduler is None and client is None:
            if graphs is None:
                graphs, memo = loaded(ref)
            else:
                memo = Memo()
            for i, s, e in todo:
                finished(i, s, e, job.run(graphs, source.read(s, e), batch_size, memo))
        elif todo:
            n_workers = _run_on_dask(job, ref, source, batch_size, todo, finished, workers, scheduler, client,
                                     timeout)
    finally:
        bar.close()
    record = combine([records[i] for i, _, _ in shards], job.axes, job.sums)
    return record, RunStats(len(shards), len(todo), len(shards) - len(todo), n_workers)


def _run_on_dask(job, ref, source, batch_size, todo, finished, workers, scheduler, client, timeout) -> int:
    import time

    import torch
    from distributed import wait
    from distributed.scheduler import KilledWorker

    threads = torch.get_num_threads()
    with dask_client(workers, scheduler, client, timeout) as c, c.as_current():
        n_workers = preflight(c, ref, source, timeout)
        futures = {}
        try:
            for i, s, e in todo:
                futures[c.submit(run_shard, job, ref, source, s, e, batch_size, threads, pure=False)] = (i, s, e)
            pending, alone_since = set(futures), None
            while pending:
                try:
                    done, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
                except _TIMEOUTS:      # nothing finished within a second: are there still workers?
                    if c.scheduler_info().get("workers"):
                        alone_since = None
                    elif alone_since is None:
                        alone_since = time.monotonic()
                    elif time.monotonic() - alone_since > timeout:
                        raise LmhtcError(f"no Dask worker left on the scheduler for {timeout:g} s; "
                                         f"{len(pending)} shards unfinished") from None
                    continue
                for fut in sorted(done, key=lambda f: futures[f][0]):
                    i, s, e = futures[fut]
                    try:
                        rec = fut.result()
                    except KilledWorker as exc:
                        raise LmhtcError(f"shard {i} (images {s}-{e - 1}) killed its Dask workers repeatedly "
                                         f"(out of memory?): {exc}") from None
                    fut.release()
                    finished(i, s, e, rec)
        finally:
            c.cancel(list(futures))
    return n_workers


def _within(timeout: float, what: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, or a one-line error when it takes longer than ``timeout`` seconds."""
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout

    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(fn, *args, **kwargs).result(timeout)
    except FutureTimeout:
        raise LmhtcError(f"{what}: no answer from the Dask workers within {timeout:g} s") from None
    finally:
        pool.shutdown(wait=False)


def run_sharded(artifact_path: str | os.PathLike, x_source, mode: str = "int", batch_size: int = 64, *,
                graph: str = "compiled", workers: int | None = None, scheduler: str | None = None, client=None,
                resume: str | os.PathLike | None = None, limit: int | None = None, progress: bool = False) -> dict:
    """Simulate an artifact on inputs (a path: .npz, directory of .npz, .npy; or an InputSource), in-process or on
    Dask; the arrays ``lmhtc simulate`` writes, identical whichever way it runs."""
    source = x_source if isinstance(x_source, InputSource) else open_inputs(x_source, limit)
    if mode not in ("int", "float"):
        raise LmhtcError(f"mode must be int or float, got {mode!r}")
    job = Simulate(mode, "integer" if mode == "int" else graph)
    record, _ = run_job(job, artifact_path, source, batch_size, workers=workers, scheduler=scheduler,
                        client=client, resume=resume, progress=progress)
    return record
