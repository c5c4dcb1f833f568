"""Scale-out: run the chunks of a :class:`~simulations.truth.TruthJob` in parallel, resumably.

* Locally: ``joblib`` processes (``n_jobs``; 1 runs in this process).
* On a cluster: give ``scheduler="tcp://host:8786"`` (needs the ``cluster`` extra,
  ``pip install finf[cluster]``); the same chunks go through joblib's Dask backend.

Chunks are pure functions of the job, so every backend gives the same numbers. When a
``folder`` is given, each chunk's result is written there (``chunk_<name>.npz``, atomically,
by this process as results arrive: workers need no shared disk) together with ``job.json``
(the job's description and key); a rerun on the same folder loads the finished chunks and
trains only the rest. A folder holding chunks of a different job is refused.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from simulations.truth import Chunk, TruthJob, run_chunk


def _chunk_task(job: TruthJob, chunk: Chunk) -> tuple[str, dict[str, np.ndarray]]:
    return chunk.name, run_chunk(job, chunk)


@contextlib.contextmanager
def _backend(scheduler: str | None) -> Iterator[None]:
    if scheduler is None:
        yield
        return
    try:
        from dask.distributed import Client
    except ImportError:
        raise ValueError("a Dask scheduler was given but dask.distributed is not installed; "
                         "install the cluster extra: pip install 'finf[cluster]'") from None
    import joblib

    with Client(scheduler) as client, joblib.parallel_config(backend="dask"):
        client.wait_for_workers(1, timeout=60)
        yield


def _prepare_folder(folder: Path, job: TruthJob) -> dict[str, dict[str, np.ndarray]]:
    from finf_stats.run_folder import read_npz, write_json

    folder.mkdir(parents=True, exist_ok=True)
    meta = folder / "job.json"
    key = job.key()
    if meta.exists():
        old = json.loads(meta.read_text())
        if old.get("key") != key:
            raise ValueError(f"{folder} holds chunks of a different job (key {old.get('key')}, "
                             f"this job {key}); use another folder or delete it")
    else:
        write_json(meta, {"key": key, "job": job.config()})
    done = {}
    for chunk in job.chunks():
        p = folder / f"chunk_{chunk.name}.npz"
        if p.exists():
            done[chunk.name] = read_npz(p)
    return done


def run_job(job: TruthJob, folder: str | Path | None = None, n_jobs: int = 1,
            scheduler: str | None = None, progress: bool = False
            ) -> dict[str, dict[str, np.ndarray]]:
    """Compute every chunk of ``job`` (loading the finished ones from ``folder``).

    Parameters
    ----------
    folder
        Where chunk results are stored as they finish (``None``: in memory only).
    n_jobs
        joblib workers for the local backend (``-1``: all cores).
    scheduler
        Address of a Dask scheduler; the chunks then run on its workers.
    progress
        Show a tqdm bar over chunks.

    Returns
    -------
    dict
        Chunk name -> ``{"with": ..., "without": ...}`` arrays (see
        :func:`simulations.truth.run_chunk`).
    """
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    from finf_stats.run_folder import write_npz

    folder = Path(folder) if folder is not None else None
    results: dict[str, dict[str, np.ndarray]] = (
        _prepare_folder(folder, job) if folder is not None else {})
    todo = [c for c in job.chunks() if c.name not in results]
    bar = tqdm(total=len(job.chunks()), initial=len(job.chunks()) - len(todo),
               desc="retraining chunks", unit="chunk", disable=not progress)
    try:
        if todo:
            if scheduler is None and n_jobs == 1:
                stream: Any = (_chunk_task(job, c) for c in todo)
                ctx: Any = contextlib.nullcontext()
            else:
                ctx = _backend(scheduler)
            with ctx:
                if scheduler is not None or n_jobs != 1:
                    stream = Parallel(n_jobs=-1 if scheduler else n_jobs,
                                      return_as="generator_unordered")(
                        delayed(_chunk_task)(job, c) for c in todo)
                for name, res in stream:
                    if folder is not None:
                        write_npz(folder / f"chunk_{name}.npz", **res)
                    results[name] = res
                    bar.update(1)
    finally:
        bar.close()
    return results
