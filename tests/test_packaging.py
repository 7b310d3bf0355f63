"""What `pip install driftloop` gives: one import name, and a client without the heavy parts.

The light install is checked in a fresh virtualenv, from PyPI (pip's cache makes a second run quick).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "ray", "evidently", "river", "fastapi", "sklearn", "pyarrow", "duckdb", "pandas")


def test_every_folder_of_code_is_a_listed_package():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {import_name: ROOT / folder for import_name, folder in package_dirs().items()}
    found = set()
    for top, folder in folders.items():
        for init in folder.rglob("__init__.py"):
            found.add(".".join([top, *init.parent.relative_to(folder).parts]))
    assert found == set(tool["packages"])


def package_dirs() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


@pytest.fixture(scope="module")
def light_install(tmp_path_factory) -> Path:
    """A fresh virtualenv with `pip install <this clone>`: the base install, no extras.

    It builds from a copy of the sources, so the build leaves nothing in the clone.
    """
    base = tmp_path_factory.mktemp("light")
    source = base / "source"
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for folder in package_dirs().values():
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([venv / "bin" / "pip", "install", "-q", str(source)], check=True, timeout=600)
    return venv


def test_the_light_install_adds_one_import_name_and_no_heavy_package(light_install):
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "import driftloop.collector as c\n"
        "event = c.PredictionEvent(request_id='r1', model_name='churn', model_version='1',\n"
        "                          features={'tenure': 12}, output={'label': 1})\n"
        "assert c.decode('prediction', c.encode(event)) == event\n"
        "files = m.distribution('driftloop').files\n"
        "inside = [f.parts[0] for f in files if f.parts[0] != '..']  # '..' is the console script in bin/\n"
        "tops = sorted({part for part in inside if not part.endswith(('.dist-info', '.pth'))})\n"
        "installed = sorted(d.metadata['Name'].lower() for d in m.distributions())\n"
        f"loaded = sorted({{n.split('.')[0] for n in sys.modules}} & set({list(HEAVY)!r}))\n"
        "print(json.dumps({'tops': tops, 'installed': installed, 'loaded': loaded}))\n"
    )
    done = subprocess.run([light_install / "bin" / "python", "-c", probe], capture_output=True, text=True,
                          cwd=light_install)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["tops"] == ["driftloop"], "one top-level import name"
    assert seen["loaded"] == [], "importing the client loads nothing heavy"
    unwanted = {"torch", "ray", "evidently", "river", "fastapi", "scikit-learn"} & set(seen["installed"])
    assert not unwanted, f"the base install pulled in {unwanted}"


def test_a_command_that_needs_an_extra_says_which(light_install, tmp_path):
    done = subprocess.run([light_install / "bin" / "driftloop", "curate", "batches"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 1
    assert "pip install 'driftloop[" in done.stderr and "Traceback" not in done.stderr
