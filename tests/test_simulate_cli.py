"""``finf simulate`` writes a complete, replayable run folder and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finf.cli import main
from finf_stats.run_folder import read_npz

ARGS = ["simulate", "--n-train", "60", "--n-test", "20", "--n-features", "4", "--flip", "0.1",
        "--candidates", "flipped,random:5,groups:2x3", "--target", "self-loss", "--target",
        "test-loss:0", "-R", "40", "--epochs", "3", "--noise", "0.3", "--no-progress"]


def test_simulate_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main([*ARGS, "--out", str(out)]) == 0
    for name in ("config.json", "provenance.json", "truth.csv", "samples.npz", "report.md",
                 "adequacy.json", "summary.json"):
        assert (out / name).is_file(), name
    truth = pd.read_csv(out / "truth.csv")
    assert list(truth.columns[:8]) == ["candidate", "target", "mu", "ci_low", "ci_high",
                                       "p_value", "n_with", "n_without"]
    n_cand = 6 + 5 + 2
    assert len(truth) == 2 * n_cand
    samples = read_npz(out / "samples.npz")
    assert samples["with_s"].shape == (2, n_cand, 40)
    assert len(list((out / "figures").glob("ranking_*.png"))) == 2
    assert len(list((out / "figures").glob("tradeoff_*.png"))) >= 2
    report = (out / "report.md").read_text()
    assert "Was R enough?" in report and "flipped" in report
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["recipe"]["model"] == "logistic" and cfg["replicas"] == 40
    # replay from config.json into another folder: the same numbers
    out2 = tmp_path / "replay"
    assert main(["simulate", "--config", str(out / "config.json"), "--out", str(out2),
                 "--no-progress"]) == 0
    np.testing.assert_array_equal(read_npz(out2 / "samples.npz")["without_s"],
                                  samples["without_s"])
    # rerun in place: every chunk is already there
    before = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("chunk_*.npz")}
    assert main([*ARGS, "--out", str(out)]) == 0
    after = {p.name: p.stat().st_mtime_ns for p in (out / "chunks").glob("chunk_*.npz")}
    assert before == after


@pytest.mark.parametrize("extra, message", [
    (["--candidates", "500"], "out of range"),
    (["--data", "mnist"], "--data-path"),
    (["--data", "fashion-mnist", "--data-path", "/nonexistent"], "dataset-fashion-mnist"),
    (["--model", "linear", "--lr", "1000", "--epochs", "100"], "diverged"),
    (["--target", "test-loss:9999"], "out of range"),
])
def test_simulate_bad_input_is_one_clear_line(tmp_path: Path, extra: list[str], message: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARGS, "--out", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
