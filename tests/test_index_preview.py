"""The first plane of a big spectrum image before its index is written: the build's first
pass counts the plane a viewer opens on and hands it over when that pass ends
(``display_pending(ds)(progress, plane, early)``); napari shows it as a preview layer
while the second pass runs; the loader's Cancel stops an index build."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_emd import api, diskcache
from napari_emd.formats.velox.stream import (
    clear_caches,
    diskindex,
    read_spectrum_images_reference,
)
from napari_emd.formats.velox.stream import planes as planes_module
from napari_emd.options import ReadOptions
from napari_emd.synthetic import write_velox_si


@pytest.fixture(autouse=True)
def _disk_path(monkeypatch):
    """Every spectrum image takes the disk index, however small."""
    monkeypatch.setattr(planes_module, "FLAT_INDEX_VALUES", 0)
    clear_caches()
    yield
    clear_caches()


@pytest.fixture
def hold(monkeypatch):
    """Holds the index build's passes (``from_pass`` 0: every pass; 1: pass 2, which
    writes the index) until ``release`` is set or the build is cancelled; ``started``
    is set when a held pass begins."""

    class Hold:
        started = threading.Event()
        release = threading.Event()
        from_pass = 1

    h = Hold()
    real = diskindex._run

    def held(tasks, stop, progress, done0, total):
        # the light pass and pass 1 come before the middle of the progress, pass 2 after
        if h.from_pass == 0 or 2 * done0 >= total:
            h.started.set()
            while not h.release.wait(0.05):
                if stop is not None and stop.is_set():
                    break
        return real(tasks, stop, progress, done0, total)

    monkeypatch.setattr(diskindex, "_run", held)
    yield h
    h.release.set()


@pytest.fixture
def passes(monkeypatch):
    """The passes the index build runs, as they start (each its first progress count)."""
    seen: list[int] = []
    real = diskindex._run

    def run(tasks, stop, progress, done0, total):
        seen.append(done0)
        return real(tasks, stop, progress, done0, total)

    monkeypatch.setattr(diskindex, "_run", run)
    return seen


@pytest.fixture(scope="module")
def si(tmp_path_factory):
    path = tmp_path_factory.mktemp("preview") / "si.emd"
    return write_velox_si(path, ny=24, nx=20, frames=4, detectors=3, counts_per_pixel=6,
                          bincount=128, seed=11, drift=[[0, 0], [1, 2], [3, -1], [4, 3]])


def _display(si, **kw):
    return next(d for d in api.read_datasets(si.path, lazy=True, **kw)
                if d.display is not None)


CASES = [
    ({}, (40,)),
    ({"sum_frames": False}, (2, 40)),
    ({"rebin_energy": 4, "SI_dtype": "float32"}, (10,)),
    ({"detectors": (0, 2)}, (40,)),
    ({"align_frames": ((0, 0), (1, 2), (3, -1), (4, 3)), "sum_frames": False}, (3, 17)),
]


@pytest.mark.parametrize(("kw", "plane"), CASES, ids=[str(c[0]) for c in CASES])
@pytest.mark.parametrize("disk", ["cache", "none"])
def test_early_plane_equals_the_reference(si, monkeypatch, passes, kw, plane, disk):
    """The plane handed over after pass 1 is the display's chunk (same values, dtype,
    shape), handed over once, before pass 2 starts; asked for after the build, it is
    the same plane (from memory), and the other planes are right too. With no disk at
    all (streaming planes) the early plane is kept the same way."""
    if disk == "none":
        monkeypatch.setattr(diskcache, "publish", lambda *a, **k: None)
    ds = _display(si, **kw)
    build = api.display_pending(ds)
    assert build is not None
    got: list[np.ndarray] = []
    build(None, plane, lambda p: got.append((p, len(passes))))
    (early, after), = got
    assert after == 1  # from the light pass, before pass 1
    ref = read_spectrum_images_reference(si.file().read(ReadOptions(**kw)))[0]
    want = np.moveaxis(ref, -1, -3).astype(early.dtype)[plane]  # the display's chunk
    assert early.shape == want.shape
    np.testing.assert_array_equal(early, want)
    np.testing.assert_array_equal(np.asarray(ds.display[plane].compute()), want)
    other = (*plane[:-1], plane[-1] + 1)
    np.testing.assert_array_equal(np.asarray(ds.display[other].compute()),
                                  np.moveaxis(ref, -1, -3).astype(early.dtype)[other])


@pytest.mark.napari
def test_viewer_shows_a_preview_while_indexing(make_napari_viewer, qtbot, si, hold):
    """Looked at: the preview of the opening plane sits where the spectrum image will
    (same scale and offset), coloured like it, named as a preview, the spectrum image
    hidden and the selection untouched; when the index is ready the preview goes and
    the spectrum image shows the same plane."""
    from napari_emd.plugin.indexing import is_preview
    from napari_emd.plugin.layer_meta import layer_info

    viewer = make_napari_viewer()  # pass 2 waits for the test (hold)
    viewer.open(str(si.path), plugin="napari-emd-io")
    (layer,) = [ly for ly in viewer.layers if layer_info(ly).is_spectrum_image]
    selected = set(viewer.layers.selection)
    qtbot.waitUntil(lambda: any(is_preview(ly) for ly in viewer.layers), timeout=120_000)
    (preview,) = [ly for ly in viewer.layers if is_preview(ly)]
    assert not layer.visible and layer_info(layer).indexing
    assert preview.visible and "preview" in preview.name and layer.name in preview.name
    assert "keV" in preview.name
    assert viewer.layers.index(preview) == viewer.layers.index(layer) + 1
    assert set(viewer.layers.selection) == selected
    np.testing.assert_allclose(preview.scale, layer.scale[-2:])
    np.testing.assert_allclose(preview.translate, layer.translate[-2:])
    assert preview.colormap.name == layer.colormap.name
    lo, hi = preview.contrast_limits
    assert hi > lo and preview.data.max() > 0  # the plane has signal: not a black view
    ref = read_spectrum_images_reference(si.file().read(ReadOptions()))[0]
    e = int(viewer.dims.current_step[0])
    np.testing.assert_array_equal(preview.data, ref[..., e])
    hold.release.set()
    qtbot.waitUntil(lambda: not layer_info(layer).indexing, timeout=120_000)
    assert layer.visible and not any(is_preview(ly) for ly in viewer.layers)
    layer.refresh()
    np.testing.assert_array_equal(np.asarray(layer._slice.image.raw), ref[..., e])
    viewer.close()


@pytest.mark.napari
def test_saving_while_indexing_leaves_the_preview_out(make_napari_viewer, qtbot, si, hold,
                                                      tmp_path):
    from napari_emd.plugin.indexing import is_preview
    from napari_emd.plugin.writer import write_layers

    viewer = make_napari_viewer()
    viewer.open(str(si.path), plugin="napari-emd-io")
    qtbot.waitUntil(lambda: any(is_preview(ly) for ly in viewer.layers), timeout=120_000)
    haadf = [ly for ly in viewer.layers if not is_preview(ly) and ly.data.ndim == 2]
    preview = next(ly for ly in viewer.layers if is_preview(ly))
    with_preview, without = tmp_path / "a.emd", tmp_path / "b.emd"
    write_layers(str(with_preview),
                 [ly.as_layer_data_tuple() for ly in [*haadf, preview]])
    write_layers(str(without), [ly.as_layer_data_tuple() for ly in haadf])
    assert len(api.file_reader(str(with_preview))) == len(api.file_reader(str(without)))
    hold.release.set()
    viewer.close()


def _load_lazily(make_napari_viewer, qtbot, path):
    """A viewer and its loader, which has just loaded ``path``'s spectrum image lazily."""
    from napari_emd.plugin.widgets.loader import LoaderWidget

    viewer = make_napari_viewer()
    w = LoaderWidget(viewer)
    qtbot.addWidget(w.native)
    w.ask_before_big_load = False
    w.set_path(path)
    with qtbot.waitSignal(w.loaded, timeout=60_000):
        w(lazy=True, select_type="spectrum images")
    return viewer, w


@pytest.mark.napari
def test_loader_cancel_stops_indexing(make_napari_viewer, qtbot, si, hold):
    from napari_emd.plugin.layer_meta import is_si_layer

    hold.from_pass = 0  # the build waits to be stopped
    viewer, w = _load_lazily(make_napari_viewer, qtbot, si.path)
    assert w.indexing and w.cancel_button.enabled and "Cancel stops it" in w.status.value
    qtbot.waitUntil(hold.started.is_set, timeout=60_000)
    name = w.indexing[0].name
    w.cancel()
    assert "Indexing cancelled" in w.status.value and name in w.status.value
    assert not any(is_si_layer(ly) for ly in viewer.layers)
    assert not w.cancel_button.enabled and w.call_button.enabled
    presenter = w.presenter
    qtbot.waitUntil(lambda: not presenter.workers, timeout=60_000)
    assert not any(p.name.startswith("velox-si-planes")
                   for p in diskcache.cache_root().iterdir())
    viewer.close()


@pytest.mark.napari
def test_removing_the_layer_stops_indexing(make_napari_viewer, qtbot, si, hold):
    from napari_emd.plugin.layer_meta import layer_info
    from napari_emd.plugin.view import install

    hold.from_pass = 0  # the build waits to be stopped
    viewer = make_napari_viewer()
    viewer.open(str(si.path), plugin="napari-emd-io")
    (layer,) = [ly for ly in viewer.layers if layer_info(ly).is_spectrum_image]
    presenter = install(viewer)
    qtbot.waitUntil(hold.started.is_set, timeout=60_000)
    viewer.layers.remove(layer)
    qtbot.waitUntil(lambda: not presenter.workers, timeout=60_000)
    assert not any(p.name.startswith("velox-si-planes")
                   for p in diskcache.cache_root().iterdir())
    viewer.close()


@pytest.mark.parametrize("table", ["missing", "wrong"])
def test_light_pass_gives_way_to_pass_one(si, tmp_path, passes, table):
    """Without a trusted frame table (none, or one putting frame 1 three values late)
    the light pass gives up and pass 1 hands the plane over: still the reference's."""
    import shutil
    import warnings

    import h5py

    path = tmp_path / "t.emd"
    shutil.copy(si.path, path)
    with h5py.File(path, "r+") as f:
        name = si.frame_tables[0]
        starts = f[name][:, 0].astype(np.int64)
        del f[name]
        if table == "wrong":
            starts[1] += 3
            f.create_dataset(name, data=starts.astype(np.uint64)[:, None])
    got: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the table is warned about (tested elsewhere)
        ds = next(d for d in api.read_datasets(path, lazy=True) if d.display is not None)
        api.display_pending(ds)(None, (40,), lambda p: got.append((p, len(passes))))
    (early, after), = got
    assert after == 2  # the light pass gave way: from pass 1
    ref = read_spectrum_images_reference(si.file().read(ReadOptions()))[0]
    np.testing.assert_array_equal(early, ref[..., 40].astype(early.dtype))


@pytest.mark.napari
def test_loader_status_after_indexing(make_napari_viewer, qtbot, si):
    """When the build ends, the loader's note of it goes (the rest of its status stays)
    and Cancel goes off."""
    viewer, w = _load_lazily(make_napari_viewer, qtbot, si.path)
    assert "Indexing the energy planes" in w.status.value
    qtbot.waitUntil(lambda: not w.indexing, timeout=120_000)
    assert w.status.value.startswith("Loaded ") and "Indexing" not in w.status.value
    assert not w.cancel_button.enabled
    viewer.close()
