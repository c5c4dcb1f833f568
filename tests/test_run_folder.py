"""Run folders: atomic, safe formats, provenance."""

import json

import numpy as np
import pytest

from finf_stats.run_folder import RunFolder, atomic_path, read_npz, write_json, write_npz


def test_run_folder_records_config_and_provenance(tmp_path):
    run = RunFolder(tmp_path / "run", {"seed": 3, "mu": float("inf")})
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config == {"seed": 3, "mu": "inf"}  # JSON has no infinities: stored as strings
    prov = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert {"git_sha", "python", "packages", "time_utc"} <= set(prov)
    assert "numpy" in prov["packages"]
    run.write_npz("raw/samples.npz", x=np.arange(3.0))
    assert np.array_equal(read_npz(tmp_path / "run" / "raw" / "samples.npz")["x"], [0, 1, 2])


def test_npz_refuses_objects_and_missing_files(tmp_path):
    with pytest.raises(TypeError, match="dtype object"):
        write_npz(tmp_path / "x.npz", a=np.array([{"a": 1}], dtype=object))
    with pytest.raises(FileNotFoundError, match="no such result file"):
        read_npz(tmp_path / "missing.npz")


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("interrupted")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
