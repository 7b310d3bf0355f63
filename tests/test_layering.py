"""Dependencies point one way (docs/architecture.md): a part never imports one it may not.

The repository keeps one folder per part; each installs as `driftloop.<part>`, and the folder
`driftloop/` is the composition root. Only the installed names exist for users, so a bare
`import collector` is wrong too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("collector", "drift", "curation", "retrain", "dashboards")
MAY_IMPORT = {
    "collector": set(),
    "drift": {"collector"},
    "curation": {"collector"},
    "retrain": {"collector", "drift", "curation"},
    "dashboards": set(),
    "driftloop": set(PARTS),  # the composition root: everything, and nothing imports it
}


def imported_parts(path: Path) -> set[str]:
    """The parts a module imports: 'collector' for driftloop.collector..., 'driftloop' for the root's modules,
    and 'bare:collector' for a bare top-level `collector`, which installs nowhere."""
    tree = ast.parse(path.read_text(), filename=str(path))
    modules = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
    parts = set()
    for name in modules:
        first, _, rest = name.partition(".")
        if first in PARTS:
            parts.add(f"bare:{first}")
        elif first == "driftloop":
            second = rest.partition(".")[0]
            parts.add(second if second in PARTS else "driftloop")
    return parts


@pytest.mark.parametrize("part", sorted(MAY_IMPORT))
def test_each_part_imports_only_what_the_architecture_allows(part):
    wrong = {
        f"{path.relative_to(ROOT)} imports {other}"
        for path in (ROOT / part).rglob("*.py")
        for other in imported_parts(path) - MAY_IMPORT[part] - {part}
    }
    assert not wrong, "imports against the direction of docs/architecture.md:\n" + "\n".join(sorted(wrong))


def test_the_check_sees_wrong_imports(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("from driftloop.settings import Settings\nimport driftloop.drift.stats\nimport curation\n")
    assert imported_parts(module) == {"driftloop", "drift", "bare:curation"}


def test_no_part_reads_the_environment_outside_the_composition_root():
    readers = [
        str(path.relative_to(ROOT))
        for part in PARTS
        for path in (ROOT / part).rglob("*.py")
        if "os.environ" in path.read_text() or "getenv" in path.read_text()
    ]
    assert not readers, f"only driftloop/ reads the environment: {readers}"
