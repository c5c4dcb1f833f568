"""The f-INE calibration study (simulations.fine_study) and ``finf demo`` on a tiny problem."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from finf.cli import main
from simulations.fine_study import StudyConfig, run_study


def _tiny() -> StudyConfig:
    base = StudyConfig()
    return replace(base, replicas=20, single_runs=5, candidates="flipped,random:8",
                   recipe=base.recipe.with_(epochs=3), n_jobs=1, trak_proj_dim=64,
                   data=replace(base.data, n_train=120, n_test=40, flip_fraction=0.05))


def test_study_writes_summary_with_stable_keys(tmp_path):
    summary = run_study(_tiny(), tmp_path / "s", progress=False)
    saved = json.loads((tmp_path / "s" / "summary.json").read_text())
    for name in ("fine", "fine_adjoint-expected", "fine_calibrated", "fine_calibrated-realised",
                 "fine_paper", "tracin", "tracin_cp",
                 "influence_function", "trak", "loo_mean"):
        m = saved["methods"][name]
        assert -1 <= m["spearman"] <= 1
        lo, hi = m["spearman_ci"]
        assert lo <= hi
        assert 0 <= m["jaccard"] <= 1
        assert "cv" in m
    assert 0 <= saved["fine"]["coverage"] <= 1 and "bias" in saved["fine"]
    assert set(saved["fine_variants"]) == {"paper", "calibrated", "calibrated-realised",
                                           "adjoint", "adjoint-expected"}
    assert saved["fine"]["preset"] == "adjoint"  # the default preset is the headline
    assert saved["recipe"]["model"] == "multinomial" and "timings" in saved
    assert (tmp_path / "s" / "report.md").read_text().startswith("# f-INE calibration study")
    assert (tmp_path / "s" / "figures" / "fine_calibration.png").is_file()
    assert np.isfinite(summary["methods"]["loo_mean"]["spearman"])


def test_demo_command(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--replicas", "10", "--runs", "5", "--epochs", "2",
               "--n-train", "100", "--candidates", "random:8", "--jobs", "1",
               "--no-progress"])
    assert rc == 0
    assert (out / "summary.json").is_file() and (out / "config.json").is_file()
    assert "tracin" in capsys.readouterr().out
