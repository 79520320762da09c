"""The library side of saving annotations: feature tables stored as datasets next to a
data group's ``data`` (every pandas dtype napari layers use), text ``dim`` vectors,
HyperSpy's navigation flags, and what EMD readers make of such groups."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

import napari_emd
from napari_emd import EMDError, read_datasets
from napari_emd.formats.emd0 import group_extras
from napari_emd.writer import write_signals
from napari_emd.writer.tables import decode_table, table_items


def _table() -> pd.DataFrame:
    return pd.DataFrame({
        "name": ["a", "b", None],
        "confidence": [0.1, 0.5, 0.9],
        "count": np.array([1, 2, 3], dtype=np.uint16),
        "phase": pd.Categorical(["x", None, "x"], categories=["x", "y", "z"], ordered=True),
        "z": pd.Categorical([1, 2, 1]),
        "good": [True, False, True],
        "maybe": pd.array([1, None, 3], dtype="Int64"),
        "note": pd.array(["p", None, "r"], dtype="string"),
        "when": pd.to_datetime(["2020-01-01", "2021-06-01", None]),
        "a/b": [1.0, np.nan, 2.0],
    })


def _signal(n, title="P"):
    return {"data": np.arange(2.0 * n).reshape(n, 2),
            "axes": [{"name": "point", "size": n, "navigate": True},
                     {"name": "axis", "labels": ["y", "x"], "units": "nm", "navigate": False}],
            "metadata": {"General": {"title": title}}}


@pytest.mark.parametrize("rows", [3, 0])
def test_table_round_trip_keeps_dtypes(tmp_path, rows):
    table = _table().iloc[:rows]
    path = tmp_path / "t.emd"
    write_signals(path, [_signal(rows)], group_items=[table_items(str(path), "layer", table)])
    with h5py.File(path, "r") as f:
        grp = f["data/P"]
        assert list(grp["features"]) == ["name", "confidence", "count", "phase", "z", "good",
                                         "maybe", "note", "when", "a_b"]
        assert grp["features/a_b"].attrs["name"] == "a/b"
        assert list(grp["feature_categories/phase"].asstr()[()]) == ["x", "y", "z"]
        if rows:
            assert list(grp["features/phase"].asstr()[()]) == ["x", "x", "x"]
            np.testing.assert_array_equal(grp["feature_missing/phase"][()], [0, 1, 0])
        extras = group_extras(grp, "data")
    pd.testing.assert_frame_equal(decode_table(extras, rows), table)


def test_nested_values_as_json_and_objects_refused(tmp_path):
    table = pd.DataFrame({"v": pd.Series([np.arange(3, dtype=np.int16), np.zeros(1, np.int16)],
                                         dtype=object),
                          "d": pd.Series([{"k": [1, 2]}, None], dtype=object)})
    items = table_items("x.emd", "layer 'p'", table)
    assert items["features"]["v"].attrs["element_dtype"] == "<i2"
    path = tmp_path / "j.emd"
    write_signals(path, [_signal(2)], group_items=[items])
    with h5py.File(path, "r") as f:
        assert f["data/P/features/d"].asstr()[0] == '{"k": [1, 2]}'
        back = decode_table(group_extras(f["data/P"], "data"), 2)
    assert back["v"][0].dtype == np.int16
    np.testing.assert_array_equal(back["v"][0], [0, 1, 2])
    assert back["d"].tolist() == [{"k": [1, 2]}, None]

    with pytest.raises(EMDError, match=r"layer 'p', feature 'f' holds builtin_function_or_method"):
        table_items("x.emd", "layer 'p'", {"f": np.array([print], dtype=object)})
    with pytest.raises(EMDError, match="time-zone"):
        table_items("x.emd", "layer 'p'", pd.DataFrame(
            {"t": pd.to_datetime(["2020-01-01"]).tz_localize("UTC")}))


def test_text_dims_and_navigation_flags_read_back(tmp_path):
    path = tmp_path / "p.emd"
    stack = {"data": np.zeros((2, 3, 4)), "metadata": {"General": {"title": "stack"}},
             "axes": [{"name": n, "size": s, "navigate": i == 0}
                      for i, (n, s) in enumerate(zip("tyx", (2, 3, 4)))]}
    write_signals(path, [_signal(3), stack])
    with h5py.File(path, "r") as f:
        assert list(f["data/P/dim1"].asstr()[()]) == ["y", "x"]
        assert f["data/P/dim1"].attrs["units"] == "[n_m]"
        assert [int(f["data/stack"][f"dim{i}"].attrs["navigate"]) for i in (3, 2, 1)] == \
            [1, 0, 0]
    got = {s["metadata"]["General"]["title"]: s for s in napari_emd.file_reader(path)}
    assert [a["navigate"] for a in got["stack"]["axes"]] == [True, False, False]
    ds = next(d for d in read_datasets(path) if d.title == "P")
    assert ds.original_metadata["dataset"]["dims"]["dim1"]["labels"] == ["y", "x"]
    rsciio_emd = pytest.importorskip("rsciio.emd")
    ncemp = pytest.importorskip("ncempy.io.emd")
    assert sorted(s["data"].shape for s in rsciio_emd.file_reader(str(path))) == \
        [(2, 3, 4), (3, 2)]
    with ncemp.fileEMD(str(path)) as f:
        assert all(f.get_emdgroup(g) is not None for g in f.list_emds)


def test_spectra_of_several_detectors_read_as_spectra(tmp_path):
    path = tmp_path / "s.emd"
    napari_emd.file_writer(path, {
        "data": np.ones((4, 100), np.uint32), "metadata": {"General": {"title": "EDS"}},
        "axes": [{"name": "detector", "size": 4, "navigate": True},
                 {"name": "Energy", "units": "keV", "size": 100, "scale": 0.01,
                  "navigate": False}]})
    (ds,) = read_datasets(path)
    assert ds.kind == napari_emd.SPECTRUM
