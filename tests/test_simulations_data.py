"""Data sources, corruptions, subsampling and candidate parsing."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from simulations.candidates import CandidateError, check_candidates, parse_candidates
from simulations.data import FASHION_DIR, DataError, DataSpec, load_dataset, read_idx


def test_mixture_is_deterministic_and_records_flips() -> None:
    spec = DataSpec("mixture", n_train=120, n_test=30, n_classes=3, flip_fraction=0.1, seed=4)
    a, b = load_dataset(spec), load_dataset(spec)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert len(a.flipped) == 12
    assert (a.y[a.flipped] != a.clean_y[a.flipped]).all()
    untouched = np.setdiff1d(np.arange(120), a.flipped)
    np.testing.assert_array_equal(a.y[untouched], a.clean_y[untouched])
    assert abs(a.X.mean()) < 1e-10 and np.allclose(a.X.std(0), 1)
    c = load_dataset(DataSpec("mixture", n_train=120, n_test=30, n_classes=3, seed=5))
    assert not np.allclose(a.X, c.X)


def test_regression_outliers_recorded() -> None:
    d = load_dataset(DataSpec("regression", n_train=50, n_test=10, outlier_fraction=0.1,
                              noise=0.5, seed=1))
    assert len(d.outliers) == 5
    shift = np.abs(d.y - d.clean_y)
    np.testing.assert_allclose(shift[d.outliers], 4.0)
    assert shift[np.setdiff1d(np.arange(50), d.outliers)].max() == 0


def test_digits_balanced_subsample() -> None:
    d = load_dataset(DataSpec("digits", n_train=200, n_test=50, seed=0))
    counts = np.bincount(d.y, minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 200
    assert d.X.shape == (200, 64) and d.n_classes == 10
    two = load_dataset(DataSpec("digits", n_train=60, n_test=20, classes=(3, 8)))
    assert set(np.unique(two.y)) == {0, 1}


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big")
                                                     for s in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_mnist_from_local_idx_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (40, 28, 28))
    labels = np.arange(40) % 10
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", imgs)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "train-images-idx3-ubyte.gz"), imgs)
    d = load_dataset(DataSpec("mnist", n_train=20, n_test=10, path=str(tmp_path), pool=2,
                              standardise=False))
    assert d.X.shape == (20, 196) and 0 <= d.X.min() and d.X.max() <= 1


def test_missing_files_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        load_dataset(DataSpec("fashion-mnist", path=str(tmp_path)))
    with pytest.raises(FileNotFoundError, match="--data-path"):
        load_dataset(DataSpec("mnist"))
    with pytest.raises(DataError, match="unknown data source"):
        load_dataset(DataSpec("cifar"))
    with pytest.raises(DataError, match="only"):
        load_dataset(DataSpec("digits", n_train=5000))


@pytest.mark.skipif(not (FASHION_DIR / "train-labels-idx1-ubyte.gz").exists(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_real_files() -> None:
    d = load_dataset(DataSpec("fashion-mnist", n_train=100, n_test=20, pool=4,
                              flip_fraction=0.2))
    assert d.X.shape == (100, 49) and len(d.flipped) == 20
    assert np.bincount(d.clean_y, minlength=10).min() == 10


def test_candidates_parse_and_errors() -> None:
    d = load_dataset(DataSpec("mixture", n_train=50, flip_fraction=0.1, seed=2))
    c = parse_candidates("flipped,random:5,groups:2x3,7,3-5,1+9", d, seed=1)
    assert [len(g) for g in c[:5]] == [1] * 5
    assert any(len(g) == 3 for g in c) and any(list(g) == [3, 4, 5] for g in c)
    keys = [tuple(g) for g in c]
    assert len(keys) == len(set(keys))
    with pytest.raises(CandidateError, match="empty"):
        check_candidates([], 10)
    with pytest.raises(CandidateError, match="out of range"):
        parse_candidates("60", d)
    with pytest.raises(CandidateError, match="empty subset"):
        check_candidates([[]], 10)
    with pytest.raises(CandidateError, match="empty"):
        parse_candidates("outliers", d)
