"""Dependencies point one way (DESIGN.md): a package never imports one it may not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"collector", "drift", "curation", "retrain", "dashboards", "driftloop"}
MAY_IMPORT = {
    "collector": set(),
    "drift": {"collector"},
    "curation": {"collector"},
    "retrain": {"collector", "drift", "curation"},
    "dashboards": set(),
    "driftloop": OURS - {"driftloop"},
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & OURS


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_package_imports_only_what_design_allows(package):
    wrong = {
        f"{path.relative_to(ROOT)} imports {other}"
        for path in (ROOT / package).rglob("*.py")
        for other in imported_packages(path) - MAY_IMPORT[package] - {package}
    }
    assert not wrong, "imports against DESIGN.md's direction:\n" + "\n".join(sorted(wrong))


def test_the_check_sees_a_wrong_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("from driftloop.settings import Settings\nimport drift.stats\n")
    assert imported_packages(module) == {"driftloop", "drift"}


def test_no_package_reads_the_environment_outside_driftloop():
    readers = [
        str(path.relative_to(ROOT))
        for package in MAY_IMPORT.keys() - {"driftloop"}
        for path in (ROOT / package).rglob("*.py")
        if "os.environ" in path.read_text() or "getenv" in path.read_text()
    ]
    assert not readers, f"only driftloop/ reads the environment: {readers}"
