"""Run folders: every result on disk is self-describing and written atomically.

A run folder holds ``config.json`` (what was asked, with seeds), ``provenance.json``
(package versions, git SHA, platform, time) and the outputs. Files are written to a
temporary name in the same folder and renamed, so an interrupted run never leaves a
half-written file; only safe formats are used (json, npz without pickle, csv, png, md).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

_PACKAGES = ("finf", "numpy", "scipy", "statsmodels", "scikit-learn", "pandas", "matplotlib",
             "joblib", "torch", "transformers", "peft", "dask", "distributed")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix,
                               dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


def jsonable(obj: Any) -> Any:
    """Replace non-finite floats by strings ("inf", "-inf", "nan"): JSON has no such numbers."""
    if isinstance(obj, float | np.floating):
        v = float(obj)
        return v if np.isfinite(v) else str(v)
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically; non-finite floats become strings."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(jsonable(obj), indent=2, default=_json_default) + "\n")
    return Path(path)


def write_npz(path: str | os.PathLike[str], **arrays: np.ndarray) -> Path:
    """Write numeric arrays to a compressed ``.npz`` atomically (object arrays are refused)."""
    for key, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise TypeError(f"array {key!r} has dtype object; npz files here never hold pickles")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


def read_npz(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a ``.npz`` file with ``allow_pickle=False``."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such result file: {p}")
    with np.load(p, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def git_sha(start: str | os.PathLike[str] | None = None) -> str | None:
    """The git commit of the source tree the code runs from (``None`` outside a repository)."""
    here = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    if out.returncode != 0 or not sha:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    return sha + ("-dirty" if dirty else "")


def provenance() -> dict[str, Any]:
    """Versions of the packages that matter, git SHA, Python, platform, CPU count and time."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "git_sha": git_sha(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "time_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


class RunFolder:
    """A folder for one run: config, provenance and outputs.

    Parameters
    ----------
    path
        The folder; created if needed.
    config
        What the run was asked to do, seeds included; written to ``config.json``.
    """

    def __init__(self, path: str | os.PathLike[str], config: dict[str, Any] | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        if config is not None:
            write_json(self.path / "config.json", config)
        write_json(self.path / "provenance.json", provenance())

    def file(self, name: str) -> Path:
        """Path of an output inside the run folder (sub-folders are created)."""
        p = self.path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, obj: Any) -> Path:
        return write_json(self.file(name), obj)

    def write_npz(self, name: str, **arrays: np.ndarray) -> Path:
        return write_npz(self.file(name), **arrays)

    def write_text(self, name: str, text: str) -> Path:
        return write_text(self.file(name), text)

    def write_csv(self, name: str, frame: Any) -> Path:
        """Write a pandas DataFrame as CSV atomically."""
        with atomic_path(self.file(name)) as tmp:
            frame.to_csv(tmp, index=False)
        return self.path / name

    def save_figure(self, name: str, figure: Any, dpi: int = 130) -> Path:
        """Save a matplotlib figure as PNG atomically and close it."""
        import matplotlib.pyplot as plt

        with atomic_path(self.file(name)) as tmp:
            figure.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        plt.close(figure)
        return self.path / name
