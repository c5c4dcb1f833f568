"""Ground truth from retrains: oracle agreement, resume, Dask = local, degenerate cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import simulations.scaleout as scaleout
from simulations.data import DataSpec, load_dataset
from simulations.oracle import oracle_influence
from simulations.recipes import InitLaw, Recipe, Schedule
from simulations.targets import Target, TargetError
from simulations.truth import TruthJob, assemble, ground_truth

SMALL = load_dataset(DataSpec("mixture", n_train=40, n_test=10, n_features=3, seed=3,
                              flip_fraction=0.1))
NOISY = Recipe(model="logistic", epochs=3, batch_size=8, schedule=Schedule(lr=0.3),
               grad_noise=0.5, name="noisy-logistic")


def small_job(**kw: object) -> TruthJob:
    args = dict(recipe=NOISY, data=SMALL, candidates=[[0], [1], [2, 3], [5]],
                targets=[Target("self-loss"), Target("test-loss", 1)], replicas=30,
                chunk_replicas=10, chunk_candidates=3, seed=7)
    args.update(kw)
    return TruthJob(**args)  # type: ignore[arg-type]


def test_oracle_agrees_with_retraining_mu() -> None:
    """Noisy full-batch GD on linear regression: the exact mu of the prediction vs retrains."""
    data = load_dataset(DataSpec("regression", n_train=30, n_test=5, n_features=3, noise=0.5,
                                 outlier_fraction=0.1, seed=3))
    recipe = Recipe(model="linear", epochs=60, batch_size=None, l2=0.01,
                    schedule=Schedule(lr=0.2), init=InitLaw("normal", 0.3), grad_noise=0.5,
                    name="oracle")
    groups = [[1], [14], [28], [0], [1, 14], [3, 4, 5]]
    job = TruthJob(recipe, data, groups, [Target("prediction", 0)], replicas=400,
                   chunk_replicas=400, seed=0)
    gt = ground_truth(job, confidence=0.99)
    res = gt.results[0]
    exact = np.array([oracle_influence(recipe, data.X, data.y, np.array(g),
                                       data.X_test[0]).mu for g in groups])
    assert np.abs(exact).max() > 1.0 and np.ptp(exact) > 1.0  # a non-trivial range of mu
    inside = (res.ci_low <= exact) & (exact <= res.ci_high)
    assert inside.all(), (exact, res.mu, res.ci_low, res.ci_high)
    # and the interval is informative: it excludes the exact mu of every other candidate
    assert np.corrcoef(exact, res.mu)[0, 1] > 0.98
    # the retrained prediction has the oracle's mean and variance (with S, shared runs)
    law = oracle_influence(recipe, data.X, data.y, np.array(groups[0]), data.X_test[0])
    x = gt.with_s[0, 0]
    assert abs(x.mean() - law.mean_with) < 4 * np.sqrt(law.var_with / x.size)
    assert abs(x.var(ddof=1) / law.var_with - 1) < 0.25


def test_truth_table_and_adequacy() -> None:
    gt = ground_truth(small_job())
    tab = gt.table()
    assert list(tab.columns[:8]) == ["candidate", "target", "mu", "ci_low", "ci_high",
                                     "p_value", "n_with", "n_without"]
    assert len(tab) == 8 and set(tab["n_with"]) == {30}
    assert (tab["ci_low"] <= tab["mu"]).all() and (tab["mu"] <= tab["ci_high"]).all()
    assert gt.with_s.shape == (2, 4, 30) == gt.without_s.shape
    # test-loss samples with S are shared by all candidates; self-loss ones are not
    np.testing.assert_array_equal(gt.with_s[1, 0], gt.with_s[1, 2])
    assert not np.allclose(gt.with_s[0, 0], gt.with_s[0, 2])
    ad = gt.adequacy()
    assert {a["target"] for a in ad} == {"self-loss", "test-loss:1"}
    assert all(a["median_half_width"] > 0 for a in ad)


def test_same_seed_same_numbers_and_seed_matters() -> None:
    a = ground_truth(small_job())
    b = ground_truth(small_job())
    c = ground_truth(small_job(seed=8))
    np.testing.assert_array_equal(a.without_s, b.without_s)
    assert not np.allclose(a.without_s, c.without_s)


def test_resume_trains_only_missing_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    job = small_job()
    full = scaleout.run_job(job, folder=tmp_path)
    files = sorted(tmp_path.glob("chunk_*.npz"))
    assert len(files) == len(job.chunks()) == 3 + 3 * 2
    files[0].unlink()
    files[4].unlink()
    calls: list[str] = []
    real = scaleout.run_chunk

    def counting(job: TruthJob, chunk: object) -> dict:
        calls.append(chunk.name)  # type: ignore[attr-defined]
        return real(job, chunk)  # type: ignore[arg-type]

    monkeypatch.setattr(scaleout, "run_chunk", counting)
    again = scaleout.run_job(job, folder=tmp_path)
    assert len(calls) == 2
    X1, Y1 = assemble(job, full)
    X2, Y2 = assemble(job, again)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)
    assert json.loads((tmp_path / "job.json").read_text())["key"] == job.key()
    with pytest.raises(ValueError, match="different job"):
        scaleout.run_job(small_job(replicas=20), folder=tmp_path)


def test_parallel_joblib_equals_serial() -> None:
    job = small_job()
    X1, Y1 = assemble(job, scaleout.run_job(job, n_jobs=1))
    X2, Y2 = assemble(job, scaleout.run_job(job, n_jobs=2))
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)


def test_dask_local_cluster_equals_local() -> None:
    distributed = pytest.importorskip("distributed")
    job = small_job()
    X1, Y1 = assemble(job, scaleout.run_job(job))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        res = scaleout.run_job(job, scheduler=cluster.scheduler_address)
    X2, Y2 = assemble(job, res)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(Y1, Y2)


def test_paired_seeds_and_degenerate_recipe() -> None:
    # paired: a point of base weight 0 has exactly the same samples with and without it
    base = np.ones(SMALL.n)
    base[5] = 0
    gt = ground_truth(small_job(pairing="paired", base_weights=base))
    np.testing.assert_array_equal(gt.with_s[:, 3], gt.without_s[:, 3])
    assert abs(gt.results[1].mu[3]) < 1e-12
    # no randomness at all (zeros init, full batch, no noise): reported, not crashed
    still = Recipe(model="logistic", epochs=3, batch_size=None, init=InitLaw("zeros"))
    gt = ground_truth(small_job(recipe=still, base_weights=base, pairing="paired"))
    assert gt.degenerate[:, 3].all() and np.isnan(gt.results[0].mu[3])
    assert gt.table().query("candidate == '5'")["note"].eq("degenerate").all()


def test_bad_jobs() -> None:
    with pytest.raises(ValueError, match="empty"):
        small_job(candidates=[])
    with pytest.raises(ValueError, match="out of range"):
        small_job(candidates=[[99]])
    with pytest.raises(TargetError, match="out of range"):
        small_job(targets=[Target("test-loss", 50)])
    with pytest.raises(ValueError, match="replicas"):
        small_job(replicas=1)
