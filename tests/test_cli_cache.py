"""``napari-emd cache info|clear``: where the disk cache is, what it holds, emptying it."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from napari_emd import diskcache
from napari_emd.cli import main


def _fill_cache(src, sizes):
    ident = diskcache.identify(src)
    for i, size in enumerate(sizes):
        data = np.full(size, i, np.uint8)
        entry = diskcache.publish("test-index", f"k{i}", ident, {}, size,
                                  lambda w, d=data: w.pwrite(0, d))
        assert entry is not None and entry.path is not None
        entry.close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("NAPARI_EMD_CACHE", str(root))
    monkeypatch.delenv("NAPARI_EMD_CACHE_SIZE", raising=False)
    src = tmp_path / "source.emd"
    src.write_bytes(b"\1" * 100_000)
    return root, src


def test_cache_info_says_where_how_many_how_big_and_the_limit(cache, capsys,
                                                              monkeypatch):
    root, src = cache
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(root) in out and "not created yet" in out
    assert "entries  0" in out and "0 B" in out and "20.0 GiB" in out
    monkeypatch.setenv("NAPARI_EMD_CACHE_SIZE", "64M")
    _fill_cache(src, [3 * 2**20, 2**20])
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "entries  2" in out
    assert "4.0 MiB (6% of the limit)" in out  # two entries of 3 and 1 MiB (+ headers)
    assert "64.0 MiB (set by NAPARI_EMD_CACHE_SIZE" in out
    assert "not created yet" not in out


def test_cache_clear_says_how_many_went_and_bytes_freed(cache, capsys):
    root, src = cache
    _fill_cache(src, [2**20, 2**20, 10])
    (root / ".tmp-crashed.nemd").write_bytes(b"\0" * 100)  # a crashed build's leftover
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("removed 4 entries (2.0 MiB freed)") and str(root) in out
    assert list(root.iterdir()) == []
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith("removed 0 entries (0 B freed)")
    assert main(["cache", "info"]) == 0
    assert "entries  0" in capsys.readouterr().out


def test_cache_info_says_when_the_cache_cannot_be_written(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NAPARI_EMD_CACHE", str(blocker / "cache"))
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "writes   none: the folder cannot be written" in out and "entries  0" in out
    assert "not created yet" not in out  # it cannot be
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith("removed 0 entries")


@pytest.mark.parametrize("action", ["info", "clear"])
def test_cache_off(monkeypatch, capsys, action):
    monkeypatch.setenv("NAPARI_EMD_CACHE", "off")
    assert main(["cache", action]) == 0
    out = capsys.readouterr().out
    assert "off (NAPARI_EMD_CACHE='off')" in out
    assert ("nothing to clear" in out) == (action == "clear")


def test_cache_command_with_an_unknown_action_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["cache", "empty"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_cache_from_the_shell(cache):
    """The console script's module, in its own process, on the same cache."""
    root, src = cache
    _fill_cache(src, [5000])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = [sys.executable, "-m", "napari_emd.cli", "cache"]
    res = subprocess.run([*run, "info"], env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "entries  1" in res.stdout and str(root) in res.stdout
    res = subprocess.run([*run, "clear"], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout.startswith("removed 1 entry (")
