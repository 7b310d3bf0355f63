"""The examples in the docstrings of the statistics and curation cores run and print what they say.

They run by the modules' installed names (driftloop.drift..., driftloop.curation...), as users import them.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("driftloop.drift", "driftloop.curation", "driftloop.retrain")


def modules() -> list[str]:
    names = []
    for package in PACKAGES:
        names.append(package)
        path = importlib.import_module(package).__path__
        names.extend(info.name for info in pkgutil.walk_packages(path, prefix=f"{package}."))
    return sorted(names)


@pytest.mark.parametrize("name", modules())
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (printed above)"
