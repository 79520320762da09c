"""Package-level promises: the manifest validates, the core has no napari/Qt/oracle import,
the code is ruff clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_validates():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManager.instance()
    pm.discover()
    mf = pm.get_manifest("napari-emd-io")
    assert mf.display_name == "napari-emd"
    res = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-emd-io"], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_manifest_commands_import():
    """Every python_name in the manifest resolves to a callable."""
    import importlib

    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    for cmd in pm.get_manifest("napari-emd-io").contributions.commands:
        mod, _, attr = cmd.python_name.partition(":")
        assert callable(getattr(importlib.import_module(mod), attr)), cmd.python_name


def test_core_imports_no_napari_qt_or_oracles(tmp_path):
    code = (
        "import sys, napari_emd\n"
        "import napari_emd.formats, napari_emd._stream, napari_emd.writer, napari_emd.testing\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PySide6', 'rsciio', 'ncempy', 'hyperspy', 'openreadout',"
        " 'vispy', 'magicgui')]\n"
        "assert not bad, bad\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_ruff_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    res = subprocess.run(
        [ruff, "check", "src", "tests", "benchmarks", "scripts"], cwd=ROOT, capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_public_api():
    import napari_emd

    for name in ("file_reader", "file_writer", "read_datasets", "detect_format", "EMDError"):
        assert hasattr(napari_emd, name)
    import inspect

    params = list(inspect.signature(napari_emd.file_reader).parameters)
    assert params == [
        "filename", "lazy", "dataset_path", "stack_group", "select_type", "first_frame",
        "last_frame", "sum_frames", "sum_EDS_detectors", "rebin_energy", "SI_dtype",
        "load_SI_image_stack",
    ]
    assert list(inspect.signature(napari_emd.file_writer).parameters) == [
        "filename", "signal", "chunks", "kwds"
    ]
