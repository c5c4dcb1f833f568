"""The `finf` front door and `finf stats two-sample` on files."""

import json

import numpy as np
import pytest

from finf.cli import main


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    a = tmp_path / "with.npy"
    np.save(a, rng.normal(size=120))
    b = tmp_path / "without.csv"
    b.write_text("loss,other\n" + "\n".join(f"{v},{w}" for v, w in
                                            zip(rng.normal(1.0, 1, 120), rng.normal(size=120),
                                                strict=True)))
    c = tmp_path / "without.txt"
    c.write_text("\n".join(str(v) for v in rng.normal(1.0, 1, 90)))
    return a, b, c


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("finf ")
    assert main([]) == 0
    assert "stats" in capsys.readouterr().out


def test_two_sample_text_json_and_plot(files, tmp_path, capsys):
    a, b, c = files
    plot = tmp_path / "curve.png"
    assert main(["stats", "two-sample", "--with", str(a), "--without", str(b), "--column",
                 "loss", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "mu = +" in out and "CI" in out and "probit slope" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert main(["stats", "two-sample", "--with", str(a), "--without", str(c), "--json",
                 "--method", "binormal"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["method"] == "binormal" and record["n_without"] == 90
    assert record["ci_low"] < record["mu"] < record["ci_high"] and record["mu"] > 0.5


@pytest.mark.parametrize(("extra", "message"), [
    (["--column", "nope"], "no column named 'nope'"),
    ([], "has 2 columns"),
    (["--column", "loss", "--method", "magic"], None),
])
def test_two_sample_errors_are_one_clear_line(files, capsys, extra, message):
    a, b, _ = files
    argv = ["stats", "two-sample", "--with", str(a), "--without", str(b), *extra]
    if message is None:  # argparse rejects unknown choices itself
        with pytest.raises(SystemExit):
            main(argv)
        assert "invalid choice" in capsys.readouterr().err
        return
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_file(tmp_path, capsys):
    assert main(["stats", "two-sample", "--with", str(tmp_path / "x.npy"), "--without",
                 str(tmp_path / "y.npy")]) == 2
    assert "sample file not found" in capsys.readouterr().err
