"""The layout is the architecture: imports point one way, and the core needs no torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# package -> packages of this project it may import
ALLOWED = {
    "finf_stats": set(),
    "simulations": {"finf_stats"},
    "llm": {"finf_stats"},
    "paper_checks": {"finf_stats", "simulations", "llm"},
    "finf": {"finf_stats", "simulations", "llm", "paper_checks"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) - ALLOWED[package] - {package}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_statistics_core_imports_without_torch_or_models():
    code = ("import sys, finf_stats, finf_stats.plots, finf_stats.fine; "
            "bad = [m for m in ('torch', 'transformers', 'simulations', 'llm') "
            "if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
