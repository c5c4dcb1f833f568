"""Data for the harness: synthetic generators and real image sets, with recorded corruptions.

A :class:`DataSpec` (JSON-serialisable) says which data, how much, which corruptions and
with which seed; :func:`load_dataset` turns it into a :class:`Dataset` deterministically.

Sources
-------
* ``mixture``: Gaussian-mixture classification, class means :math:`m_k \\sim N(0, s^2 I)`
  with ``s = separation``, examples :math:`x = m_y + N(0, I)` (``n_classes = 2`` for
  logistic regression).
* ``regression``: :math:`y = x^\\top\\beta + \\epsilon`, :math:`x \\sim N(0, I)`,
  :math:`\\beta \\sim N(0, I/d)`, :math:`\\epsilon \\sim N(0, \\mathrm{noise}^2)`.
* ``digits``: scikit-learn's bundled 8×8 digits (1,797 real images).
* ``fashion-mnist``: the idx files of Debian's ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``, or ``path``, or ``$FINF_FASHION_MNIST_DIR``).
* ``mnist``: MNIST idx files (``train-images-idx3-ubyte[.gz]`` etc.) in the folder ``path``.

Corruptions (recorded): ``flip_fraction`` of the training labels replaced by another class
chosen uniformly (indices in ``Dataset.flipped``); for regression, ``outlier_fraction`` of the
training targets shifted by ``± outlier_scale · noise`` (indices in ``Dataset.outliers``).
Subsampling is class balanced (``balanced=True``); features are standardised with the
training mean and standard deviation (constant features keep sd 1).
"""

from __future__ import annotations

import gzip
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SOURCES = ("mixture", "regression", "digits", "fashion-mnist", "mnist")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


class DataError(ValueError):
    """A data specification that cannot be satisfied."""


@dataclass(frozen=True)
class DataSpec:
    """Which data to load (see the module docstring). All randomness comes from ``seed``."""

    source: str = "mixture"
    n_train: int = 200
    n_test: int = 100
    n_features: int = 10
    n_classes: int = 2
    separation: float = 1.0
    noise: float = 0.5
    flip_fraction: float = 0.0
    outlier_fraction: float = 0.0
    outlier_scale: float = 8.0
    classes: tuple[int, ...] | None = None
    pool: int = 1
    balanced: bool = True
    standardise: bool = True
    path: str | None = None
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = list(self.classes) if self.classes is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        d = dict(d)
        if d.get("classes") is not None:
            d["classes"] = tuple(int(c) for c in d["classes"])
        return cls(**d)


@dataclass
class Dataset:
    """Training and test data with the corruptions that were applied.

    ``X (n, d)``, ``y (n,)`` (ints for classification, floats for regression), the same for
    the test set; ``flipped``/``outliers``: indices into the training set;
    ``clean_y``: the training labels before corruption.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    task: str
    n_classes: int
    flipped: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    outliers: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    clean_y: np.ndarray | None = None
    spec: DataSpec | None = None

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "task": self.task, "n_train": self.n,
                "n_test": int(self.X_test.shape[0]), "n_features": int(self.X.shape[1]),
                "n_classes": self.n_classes, "flipped": self.flipped.tolist(),
                "outliers": self.outliers.tolist()}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (``.gz`` or not) into a uint8 array of its stated shape."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{p} is not an unsigned-byte idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{p}: idx header says {dims} but holds {data.size} values")
    return data.reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_idx_set(folder: Path, what: str, how_to_get: str
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
             "t10k-labels-idx1-ubyte")
    paths = [_find_idx(folder, s) for s in stems]
    missing = [s for s, p in zip(stems, paths, strict=True) if p is None]
    if missing:
        raise FileNotFoundError(f"{what}: {folder} lacks {', '.join(missing)} (.gz or not). "
                                f"{how_to_get}")
    Xtr, ytr, Xte, yte = (read_idx(p) for p in paths)  # type: ignore[arg-type]
    return Xtr, ytr, Xte, yte


def _pool_images(images: np.ndarray, k: int) -> np.ndarray:
    """Average-pool ``(m, h, w)`` images by ``k × k`` blocks, flatten, scale to [0, 1]."""
    m, h, w = images.shape
    x = images.astype(np.float64) / 255.0
    if k > 1:
        x = x[:, : h - h % k, : w - w % k].reshape(m, h // k, k, w // k, k).mean(axis=(2, 4))
    return x.reshape(m, -1)


def _subsample(y: np.ndarray, n: int, balanced: bool, rng: np.random.Generator,
               what: str) -> np.ndarray:
    """Indices of ``n`` examples, class balanced when asked (remainder to the first classes)."""
    if n > len(y):
        raise DataError(f"asked for {n} {what} examples but only {len(y)} exist")
    if not balanced:
        return np.sort(rng.choice(len(y), size=n, replace=False))
    classes = np.unique(y)
    per = np.full(len(classes), n // len(classes))
    per[: n % len(classes)] += 1
    out = []
    for c, k in zip(classes, per, strict=True):
        pool = np.flatnonzero(y == c)
        if k > len(pool):
            raise DataError(f"class {c} has {len(pool)} {what} examples, fewer than the "
                            f"{k} a balanced sample of {n} needs")
        out.append(rng.choice(pool, size=k, replace=False))
    return np.sort(np.concatenate(out))


def _restrict_classes(X: np.ndarray, y: np.ndarray, classes: tuple[int, ...] | None
                      ) -> tuple[np.ndarray, np.ndarray]:
    if classes is None:
        return X, y
    keep = np.isin(y, classes)
    remap = {c: i for i, c in enumerate(classes)}
    return X[keep], np.array([remap[int(v)] for v in y[keep]], dtype=np.int64)


def load_dataset(spec: DataSpec) -> Dataset:
    """Build the dataset a spec describes (deterministic in ``spec.seed``).

    Raises
    ------
    DataError
        Unknown source, impossible sizes or fractions.
    FileNotFoundError
        Missing image files, with the command that installs them.
    """
    if spec.source not in SOURCES:
        raise DataError(f"unknown data source {spec.source!r}; use one of {SOURCES}")
    if spec.n_train < 2 or spec.n_test < 1:
        raise DataError("need n_train >= 2 and n_test >= 1")
    if not 0 <= spec.flip_fraction < 1 or not 0 <= spec.outlier_fraction < 1:
        raise DataError("flip_fraction and outlier_fraction must lie in [0, 1)")
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 7]))
    task = "regression" if spec.source == "regression" else "classification"
    if spec.source == "mixture":
        K, d = spec.n_classes, spec.n_features
        means = spec.separation * rng.standard_normal((K, d))
        m = spec.n_train + spec.n_test
        y_all = np.arange(m) % K
        rng.shuffle(y_all)
        X_all = means[y_all] + rng.standard_normal((m, d))
        X, y = X_all[: spec.n_train], y_all[: spec.n_train]
        Xt, yt = X_all[spec.n_train:], y_all[spec.n_train:]
    elif spec.source == "regression":
        d = spec.n_features
        beta = rng.standard_normal(d) / np.sqrt(d)
        m = spec.n_train + spec.n_test
        X_all = rng.standard_normal((m, d))
        y_all = X_all @ beta + spec.noise * rng.standard_normal(m)
        X, y = X_all[: spec.n_train], y_all[: spec.n_train]
        Xt, yt = X_all[spec.n_train:], y_all[spec.n_train:]
        K = 1
    else:
        if spec.source == "digits":
            from sklearn.datasets import load_digits

            bunch = load_digits()
            Xp, yp = bunch.data / 16.0, bunch.target.astype(np.int64)
            Xp, yp = _restrict_classes(Xp, yp, spec.classes)
            test = _subsample(yp, spec.n_test, spec.balanced, rng, "digits test")
            rest = np.setdiff1d(np.arange(len(yp)), test)
            train = rest[_subsample(yp[rest], spec.n_train, spec.balanced, rng, "digits train")]
            X, y, Xt, yt = Xp[train], yp[train], Xp[test], yp[test]
        else:
            if spec.source == "fashion-mnist":
                folder = Path(spec.path or os.environ.get("FINF_FASHION_MNIST_DIR")
                              or FASHION_DIR)
                how = ("Install the real Fashion-MNIST files with `sudo apt-get update && "
                       "sudo apt-get install -y dataset-fashion-mnist` (Debian/Ubuntu), or "
                       "point --data-path / $FINF_FASHION_MNIST_DIR at a folder with them.")
            else:
                if spec.path is None:
                    raise FileNotFoundError("mnist: give the folder holding the MNIST idx files "
                                            "(--data-path DIR); nothing is downloaded")
                folder = Path(spec.path)
                how = "Point --data-path at the folder with the four MNIST idx files."
            Xtr, ytr, Xte, yte = _load_idx_set(folder, spec.source, how)
            ytr, yte = ytr.astype(np.int64), yte.astype(np.int64)
            Xtr_f = np.arange(len(ytr))  # subsample before converting the pixels
            Xtr_i, ytr = _restrict_classes(Xtr_f[:, None], ytr, spec.classes)
            Xte_i, yte = _restrict_classes(np.arange(len(yte))[:, None], yte, spec.classes)
            tr = _subsample(ytr, spec.n_train, spec.balanced, rng, f"{spec.source} train")
            te = _subsample(yte, spec.n_test, spec.balanced, rng, f"{spec.source} test")
            X = _pool_images(Xtr[Xtr_i[tr, 0]], spec.pool)
            Xt = _pool_images(Xte[Xte_i[te, 0]], spec.pool)
            y, yt = ytr[tr], yte[te]
        K = int(max(y.max(), yt.max()) + 1)
    X, Xt = np.asarray(X, dtype=np.float64), np.asarray(Xt, dtype=np.float64)
    if spec.standardise:
        mu, sd = X.mean(0), X.std(0)
        sd[sd < 1e-12] = 1.0
        X, Xt = (X - mu) / sd, (Xt - mu) / sd
    clean = y.copy()
    flipped = np.zeros(0, dtype=np.int64)
    outliers = np.zeros(0, dtype=np.int64)
    n = len(y)
    if spec.flip_fraction > 0:
        if task != "classification":
            raise DataError("flip_fraction needs a classification source; use outlier_fraction")
        flipped = np.sort(rng.choice(n, size=int(round(spec.flip_fraction * n)), replace=False))
        y = y.copy()
        y[flipped] = (y[flipped] + rng.integers(1, K, size=len(flipped))) % K
    if spec.outlier_fraction > 0:
        if task != "regression":
            raise DataError("outlier_fraction needs the regression source; use flip_fraction")
        outliers = np.sort(rng.choice(n, size=int(round(spec.outlier_fraction * n)),
                                      replace=False))
        y = y.copy()
        y[outliers] += rng.choice([-1.0, 1.0], size=len(outliers)) * spec.outlier_scale * max(
            spec.noise, 1e-3)
    return Dataset(name=spec.source, X=X, y=y, X_test=Xt, y_test=yt, task=task, n_classes=K,
                   flipped=flipped.astype(np.int64), outliers=outliers.astype(np.int64),
                   clean_y=clean, spec=spec)
