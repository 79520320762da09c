"""The ``napari-emd`` console script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conftest import real_file
from napari_emd.cli import info_table, main


def test_info_lists_datasets_without_reading_data(capsys):
    path = real_file("fei_emd_si.emd")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "HAADF" in out and "EDS" in out
    assert "keV" in out and "nm" in out
    assert "spectrum_image" in out


def test_info_table_has_one_row_per_dataset():
    table = info_table(str(real_file("fei_example_dpc_titles.emd")))
    lines = table.splitlines()
    assert len(lines) == 2 + 9  # header, rule, nine DPC images


def test_info_reports_errors_cleanly(tmp_path, capsys):
    bad = tmp_path / "bad.emd"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert main(["info", str(bad)]) == 2
    assert "bad.emd" in capsys.readouterr().err


@pytest.mark.napari
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("Xvfb") is None, reason="Xvfb is not installed")
def test_view_without_display_saves_screenshot(tmp_path):
    """With no DISPLAY, ``view`` starts its own Xvfb, renders the sample, saves a PNG."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [sys.executable, "-m", "napari_emd.cli", "view", "--screenshot", str(shot)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert str(shot) in res.stdout
    from PIL import Image

    img = Image.open(shot)
    assert img.size[0] > 800
    # not a blank picture
    import numpy as np

    assert len(np.unique(np.asarray(img.convert("L")))) > 20
