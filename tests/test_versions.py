"""The dependency floors pyproject.toml claims are the versions the oldest-versions run
installs (ci/oldest.txt), and that run really runs on them."""

from __future__ import annotations

import os
import re
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _floors() -> dict[str, str]:
    """``name -> floor`` of every ``name>=floor`` dependency in pyproject.toml."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = {}
    for dep in project["dependencies"]:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^]]*\])?>=([0-9][0-9a-z.]*)", dep.strip())
        assert m, f"dependency {dep!r} has no plain >= floor"
        floors[m.group(1).lower()] = m.group(3)
    return floors


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "ci" / "oldest.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, pin = line.split("==")
            pins[name.strip().lower()] = pin.strip()
    return pins


def _same(a: str, b: str) -> bool:
    from packaging.version import Version

    return Version(a) == Version(b)


def test_every_floor_is_pinned_for_the_oldest_run():
    floors, pins = _floors(), _pins()
    assert set(floors) == set(pins)
    for name, floor in floors.items():
        assert _same(pins[name], floor), (name, pins[name], floor)


@pytest.mark.skipif(not os.environ.get("NAPARI_EMD_EXPECT_FLOORS"),
                    reason="only in the oldest-versions run (scripts/test.sh sets it)")
def test_the_oldest_run_runs_on_the_floors():
    for name, pin in _pins().items():
        assert _same(version(name), pin), (name, version(name), pin)
