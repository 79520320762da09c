"""What a user sees in napari when napari-emd cannot read an .emd file: our reason (the
file and what is wrong with it) as the toast shown, not napari's generic "refused the
file" or "Tried to read ... but it gave an error"."""

from __future__ import annotations

import pytest

from conftest import real_file
from napari_emd import EMDError

PLUGIN = "napari-emd-io"


@pytest.fixture
def notifications():
    """The messages napari's notification manager dispatches during the test."""
    from napari.utils.notifications import notification_manager

    seen: list[str] = []

    def keep(n):
        seen.append(n.message)

    notification_manager.notification_ready.connect(keep)
    yield seen
    notification_manager.notification_ready.disconnect(keep)


def _text_emd(tmp_path):
    p = tmp_path / "notes.emd"
    p.write_text("some text, renamed .emd\n")
    return p


def _truncated_velox(tmp_path):
    src = real_file("Test SI 16x16 215 kx.emd")
    p = tmp_path / "cut.emd"
    data = src.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


@pytest.mark.parametrize(("make", "reason"), [
    (_text_emd, "not an HDF5 file"),
    (_truncated_velox, "truncated or corrupt?"),
])
def test_open_with_our_plugin_raises_our_reason_first(
    make_napari_viewer, qtbot, tmp_path, notifications, make, reason
):
    path = make(tmp_path)
    viewer = make_napari_viewer()
    with pytest.raises(EMDError) as info:
        viewer.open(str(path), plugin=PLUGIN)
    headline = f"{path}: "
    assert str(info.value).startswith(headline)
    assert reason in str(info.value).splitlines()[0]
    # the same message is napari's notification (once Qt's loop runs again)
    qtbot.waitUntil(lambda: bool(notifications))
    assert notifications[-1].startswith(headline) and reason in notifications[-1]
    assert len(viewer.layers) == 0


@pytest.mark.parametrize(("make", "reason"), [
    (_text_emd, "not an HDF5 file"),
    (_truncated_velox, "truncated or corrupt?"),
])
def test_gui_open_notifies_our_reason_after_napari_generic_error(
    make_napari_viewer, qtbot, tmp_path, notifications, make, reason
):
    """File > Open (no plugin named): napari wraps the reader's exception in its own
    ReaderPluginError, whose first line is napari's, and its exception hook notifies
    it (its toast showed only the newest notification: napari's generic one replaced
    ours). Ours comes after it, so ours is the toast the user sees."""
    import sys

    from napari.errors import ReaderPluginError
    from napari.utils.notifications import notification_manager

    path = make(tmp_path)
    viewer = make_napari_viewer()
    with pytest.raises(ReaderPluginError) as info:
        try:
            viewer.window._qt_viewer._qt_open([str(path)], stack=False)
        except ReaderPluginError:  # what napari's exception hook does in its GUI
            notification_manager.receive_error(*sys.exc_info())
            raise
    # napari >= 0.6.2 keeps the reader's error as original_error; 0.6.0 chains it
    chain, err = [], info.value
    while err is not None and len(chain) < 10:
        chain.append(type(err))
        err = getattr(err, "original_error", None) or err.__cause__ or err.__context__
    original = EMDError if EMDError in chain else chain[-1]
    del info  # its traceback holds the Qt viewer, which napari's fixture checks is freed
    assert original is EMDError
    assert notifications and notifications[0].startswith("Tried"), notifications
    qtbot.waitUntil(lambda: len(notifications) == 2)
    last = notifications[-1]  # the toast shows the newest
    assert last.startswith(f"{path}: ") and reason in last.splitlines()[0]
    notification_manager.records.clear()  # its traceback holds the viewer
