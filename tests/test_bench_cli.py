"""`finf bench fine --quick`: the record a user reads (keys and what they mean), not timings."""

import json

from finf.cli import main


def test_bench_fine_quick_record(tmp_path, capsys):
    out = tmp_path / "fine.json"
    assert main(["bench", "fine", "--quick", "--json", "--out", str(out)]) in (0, None)
    record = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == record
    for key in ("overhead_ratio", "overhead_ratio_default", "overhead_ratio_batched",
                "peak_mb", "peak_mb_default"):
        assert record[key] > 0, key
    row = record["runs_1"]
    # the ratios are capture time over the same call's plain time
    assert abs(row["paper"]["overhead_ratio"] - row["paper"]["capture_s"] / row["plain_s"]) < 1e-9
    assert record["overhead_ratio"] == row["paper"]["overhead_ratio"]
    assert record["overhead_ratio_default"] == row["adjoint"]["overhead_ratio"]
    assert record["runs_1"]["adjoint"]["stage2_s"] >= 0
    assert "hardware" in record                  # every benchmark record names its machine
