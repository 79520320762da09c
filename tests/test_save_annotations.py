"""Annotation layers (points, shapes, vectors, tracks, labels) saved to NCEM EMD and
opened again, with a real napari viewer: world coordinates in the file, features with
their dtypes, text, colours, sizes, symbols and layer order back in napari."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest

from napari_emd import EMDError
from napari_emd.plugin.compat import is_default_axis_label
from napari_emd.plugin.writer import write_layers

PLUGIN = "napari-emd-io"


def _features(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "label": [f"p{i}" for i in range(n)],
        "confidence": rng.random(n),
        "count": np.arange(n, dtype=np.int32),
        "phase": pd.Categorical(rng.choice(["Au", "C"], n), categories=["Au", "C", "Cu"]),
        "good": np.arange(n) % 2 == 0,
    })


def _reopen(make_napari_viewer, path):
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin=PLUGIN)
    return viewer


def _state(path, group):
    with h5py.File(path, "r") as f:
        return json.loads(f["data"][group].attrs["napari_layer"])


def test_points_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 30), np.float32), name="HAADF", scale=(2.0, 2.0),
                     units="nm", axis_labels=("y", "x"))
    coords = np.array([[1.0, 2.0], [3.5, 4.0], [10.0, 20.0], [0.0, 0.5]])
    pts = viewer.add_points(
        coords, name="spots", scale=(2.0, 2.0), translate=(1.0, -1.0),
        features=_features(4), size=[3, 4, 5, 6], symbol=["disc", "square", "star", "x"],
        face_color=["red", "green", "blue", "yellow"], border_width=0.2,
        text={"string": "{label}: {confidence:.2f}", "size": 9, "color": "cyan"},
        opacity=0.6, blending="additive",
    )
    path = tmp_path / "points.emd"
    assert viewer.layers.save(str(path), plugin=PLUGIN) == [str(path)]

    with h5py.File(path, "r") as f:
        grp = f["data/spots"]
        world = grp["data"][()].T  # stored reversed, as every EMD array
        np.testing.assert_allclose(world, coords * 2.0 + [1.0, -1.0])
        assert [s.decode() if isinstance(s, bytes) else s for s in grp["dim1"][()]] == \
            ["y", "x"]
        assert grp["dim1"].attrs["units"] == "[n_m]"  # the world of the HAADF image
        assert grp["dim2"].attrs["name"] == "point"
        assert list(grp["features"]) == ["label", "confidence", "count", "phase", "good"]
        assert grp["features/phase"].attrs["kind"] == "category"
        assert list(grp["features/phase"].asstr()[()]) == list(pts.features["phase"])
        assert grp["text"].asstr()[0] == f"p0: {pts.features['confidence'][0]:.2f}"
        np.testing.assert_allclose(grp["napari/face_color"][()], pts.face_color)

    new = _reopen(make_napari_viewer, path).layers["spots"]
    assert new._type_string == "points"
    np.testing.assert_allclose(new.data, pts.data)
    np.testing.assert_allclose(new.scale, pts.scale)
    np.testing.assert_allclose(new.translate, pts.translate)
    pd.testing.assert_frame_equal(new.features, pts.features)
    np.testing.assert_allclose(new.size, pts.size)
    assert [s.value for s in new.symbol] == [s.value for s in pts.symbol]
    np.testing.assert_allclose(new.face_color, pts.face_color)
    np.testing.assert_allclose(new.border_width, pts.border_width)
    assert new.text.string.format == "{label}: {confidence:.2f}"
    assert new.text.size == 9
    np.testing.assert_allclose(new.text.color.constant, pts.text.color.constant)
    assert new.opacity == pytest.approx(0.6)
    assert new.blending == "additive"


def test_shapes_every_type_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    shapes = [
        np.array([[0, 0], [0, 10], [5, 10], [5, 0]], float),  # rectangle
        np.array([[10, 10], [10, 20], [16, 20], [16, 10]], float),  # ellipse
        np.array([[1, 1], [8, 3], [4, 9]], float),  # polygon
        np.array([[2, 2], [12, 14]], float),  # line
        np.array([[0, 5], [3, 8], [6, 5], [9, 8]], float),  # path
    ]
    types = ["rectangle", "ellipse", "polygon", "line", "path"]
    layer = viewer.add_shapes(
        shapes, shape_type=types, name="regions", scale=(0.5, 0.5), units="nm",
        edge_width=[1, 2, 3, 4, 5], edge_color=["red", "blue", "green", "white", "black"],
        face_color="orange", z_index=[4, 3, 2, 1, 0], features=_features(5, seed=1),
        text={"string": "{phase}", "visible": False},
    )
    path = tmp_path / "shapes.emd"
    viewer.layers.save(str(path), plugin=PLUGIN)
    with h5py.File(path, "r") as f:
        grp = f["data/regions"]
        assert list(grp["shape_type"].asstr()[()]) == types
        np.testing.assert_array_equal(grp["shape_index"][()],
                                      np.repeat(np.arange(5), [4, 4, 3, 2, 4]))
        np.testing.assert_allclose(grp["data"][()].T, np.concatenate(shapes) * 0.5)

    new = _reopen(make_napari_viewer, path).layers["regions"]
    assert new._type_string == "shapes"
    assert new.shape_type == types
    for a, b in zip(new.data, layer.data, strict=True):
        np.testing.assert_allclose(a, b)
    np.testing.assert_allclose(new.edge_width, layer.edge_width)
    np.testing.assert_allclose(new.edge_color, layer.edge_color)
    np.testing.assert_allclose(new.face_color, layer.face_color)
    assert list(new.z_index) == [4, 3, 2, 1, 0]
    pd.testing.assert_frame_equal(new.features, layer.features)
    assert new.text.visible is False
    assert new.text.string.format == "{phase}"


def test_vectors_and_tracks_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    vec = np.zeros((3, 2, 2))
    vec[:, 0] = [[1, 1], [2, 5], [7, 3]]
    vec[:, 1] = [[0, 2], [1, -1], [3, 3]]
    vectors = viewer.add_vectors(vec, name="flow", scale=(3.0, 3.0), translate=(5, 5),
                                 edge_width=2, length=1.5, edge_color=["red", "lime", "blue"],
                                 features={"speed": [1.0, 2.0, 3.5]})
    tracks_data = np.array([[1, 0, 10, 10], [1, 1, 11, 12], [2, 0, 20, 20], [2, 1, 21, 19],
                            [3, 2, 22, 22]], float)
    tracks = viewer.add_tracks(tracks_data, name="particles", graph={3: [1, 2]},
                               scale=(0.5, 2.0, 2.0), tail_length=12, tail_width=3,
                               features={"intensity": [1.0, 2.0, 3.0, 4.0, 5.0]})
    path = tmp_path / "vt.emd"
    viewer.layers.save(str(path), plugin=PLUGIN)
    with h5py.File(path, "r") as f:
        np.testing.assert_allclose(f["data/flow/data"][()].T[:, 0], vec[:, 0] * 3 + 5)
        np.testing.assert_allclose(f["data/flow/data"][()].T[:, 1], vec[:, 1] * 3)
        np.testing.assert_array_equal(f["data/particles/graph"][()], [[3, 1], [3, 2]])
        assert list(f["data/particles/dim1"].asstr()[()]) == ["track_id", "t", "y", "x"]

    viewer2 = _reopen(make_napari_viewer, path)
    new_v, new_t = viewer2.layers["flow"], viewer2.layers["particles"]
    assert new_v._type_string == "vectors" and new_t._type_string == "tracks"
    np.testing.assert_allclose(new_v.data, vectors.data)
    np.testing.assert_allclose(new_v.edge_color, vectors.edge_color)
    assert new_v.length == pytest.approx(1.5) and new_v.edge_width == pytest.approx(2)
    np.testing.assert_allclose(new_v.features["speed"], [1.0, 2.0, 3.5])
    np.testing.assert_allclose(new_t.data, tracks.data)
    assert {k: sorted(v) for k, v in new_t.graph.items()} == {3: [1, 2]}
    assert new_t.tail_length == 12 and new_t.tail_width == 3
    np.testing.assert_allclose(new_t.features["intensity"], tracks.features["intensity"])
    np.testing.assert_allclose(new_t.scale, tracks.scale)


def test_labels_axis_names_features_and_colormap(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((8, 8)), name="img", scale=(0.5, 0.5), units="nm",
                     axis_labels=("row", "column"))
    lab = viewer.add_labels(np.arange(64, dtype=np.uint8).reshape(8, 8) % 3, name="grains",
                            scale=(0.5, 0.5),
                            features=pd.DataFrame({"index": [0, 1, 2],
                                                   "area": [10.0, 20.0, 34.0]}))
    lab.colormap = {0: "transparent", 1: "red", 2: "blue", None: "black"}
    # napari's defaults (their spelling depends on the napari release)
    assert all(is_default_axis_label(v, i, 2) for i, v in enumerate(lab.axis_labels))
    path = tmp_path / "labels.emd"
    viewer.layers.save(str(path), plugin=PLUGIN)
    with h5py.File(path, "r") as f:
        dims = f["data/grains"]
        assert (dims["dim2"].attrs["name"], dims["dim1"].attrs["name"]) == ("row", "column")
        assert dims["dim1"].attrs["units"] == "[n_m]"
    new = _reopen(make_napari_viewer, path).layers["grains"]
    assert new._type_string == "labels"
    assert tuple(new.axis_labels) == tuple(lab.axis_labels)  # comes back as it was
    pd.testing.assert_frame_equal(new.features, lab.features)
    np.testing.assert_allclose(new.colormap.map(np.array([1, 2])),
                               lab.colormap.map(np.array([1, 2])))


def test_axis_names_without_any_named_layer(tmp_path):
    path = tmp_path / "plain.emd"
    write_layers(str(path), [(np.zeros((4, 5), np.uint8), {"name": "lab",
                                                          "axis_labels": ("-2", "-1")},
                              "labels"),
                             (np.zeros((2, 3)), {"name": "pts", "ndim": 3,
                                                 "axis_labels": ("-3", "-2", "-1")}, "points")])
    with h5py.File(path, "r") as f:
        assert [f["data/lab"][k].attrs["name"] for k in ("dim2", "dim1")] == ["y", "x"]
        assert list(f["data/pts/dim1"].asstr()[()]) == ["axis 0", "y", "x"]


def test_empty_layers_round_trip(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    pts = viewer.add_points(np.empty((0, 3)), name="no points", features=_features(0),
                            face_color="magenta", size=7)
    viewer.add_shapes(name="no shapes", ndim=2)
    viewer.add_vectors(np.empty((0, 2, 2)), name="no vectors")
    path = tmp_path / "empty.emd"
    viewer.layers.save(str(path), plugin=PLUGIN)
    viewer2 = _reopen(make_napari_viewer, path)
    assert [ly.name for ly in viewer2.layers] == [ly.name for ly in viewer.layers]
    new = viewer2.layers["no points"]
    assert new.data.shape == (0, 3)
    assert list(new.features.columns) == list(pts.features.columns)
    assert new.features["phase"].dtype == pts.features["phase"].dtype
    assert new.current_face_color == pts.current_face_color
    assert len(viewer2.layers["no shapes"].data) == 0
    assert viewer2.layers["no vectors"].data.shape == (0, 2, 2)
    # (napari 0.9 cannot make a tracks layer without tracks)


def test_nan_coordinates_stored_faithfully(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_points(np.array([[1.0, 2.0], [np.nan, 3.0]]), name="gappy")
    path = tmp_path / "nan.emd"
    viewer.layers.save(str(path), plugin=PLUGIN)
    new = _reopen(make_napari_viewer, path).layers["gappy"]
    np.testing.assert_array_equal(new.data, layer.data)  # NaN compares equal here


def test_object_features_stored_or_refused(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    ok = viewer.add_points(np.zeros((2, 2)), name="nested", features=pd.DataFrame({
        "profile": pd.Series([np.arange(3, dtype=np.float32), np.arange(5, dtype=np.float32)],
                             dtype=object),
        "info": pd.Series([{"a": 1}, [1, 2]], dtype=object)}))
    path = tmp_path / "nested.emd"
    viewer.layers.save(str(path), plugin=PLUGIN)
    new = _reopen(make_napari_viewer, path).layers["nested"]
    np.testing.assert_array_equal(new.features["profile"][1], ok.features["profile"][1])
    assert new.features["profile"][1].dtype == np.float32
    assert list(new.features["info"]) == [{"a": 1}, [1, 2]]

    class Particle:
        pass

    viewer.add_points(np.zeros((1, 2)), name="objects", features={"p": [Particle()]})
    bad = tmp_path / "bad.emd"
    with pytest.raises(EMDError, match=r"layer 'objects', feature 'p' holds Particle"):
        viewer.layers.save(str(bad), plugin=PLUGIN)
    assert not bad.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["nested.emd"]


def test_huge_feature_table(tmp_path):
    n = 200_000
    rng = np.random.default_rng(5)
    features = pd.DataFrame({"x": rng.random(n), "name": [f"n{i}" for i in range(n)],
                             "cls": pd.Categorical(rng.integers(0, 50, n))})
    path = tmp_path / "big.emd"
    write_layers(str(path), [(rng.random((n, 2)), {
        "name": "many", "features": features, "face_color": rng.random((n, 4)),
        "size": np.full(n, 3.0)}, "points")])
    with h5py.File(path, "r") as f:
        grp = f["data/many"]
        assert len(grp.attrs["napari_layer"]) < 4096  # per-point state is in datasets
        assert grp["features/name"].shape == (n,)
        assert grp["napari/face_color"].shape == (n, 4)
        assert "size" not in grp["napari"]  # one size for all: in the JSON
    from napari_emd import read_datasets
    from napari_emd.writer.tables import decode_table

    (ds,) = read_datasets(path)
    pd.testing.assert_frame_equal(decode_table(ds.saved.items, n), features)


def test_layer_order_kept(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_points(np.zeros((1, 2)), name="C")
    viewer.add_image(np.zeros((3, 3)), name="Ca")
    viewer.add_shapes([np.array([[0, 0], [1, 1]])], shape_type="line", name="Cu")
    viewer.add_labels(np.zeros((3, 3), np.uint8), name="A")
    path = tmp_path / "order.emd"
    viewer.layers.save(str(path), plugin=PLUGIN)
    viewer2 = _reopen(make_napari_viewer, path)
    assert [(ly.name, ly._type_string) for ly in viewer2.layers] == [
        ("C", "points"), ("Ca", "image"), ("Cu", "shapes"), ("A", "labels")]
    with h5py.File(path, "r") as f:  # no group name starts another (RosettaSciIO)
        names = list(f["data"])
        assert not any(a != b and b.startswith(a) for a in names for b in names)
        assert [f["data"][g].attrs["title"] for g in names] == ["C", "Ca", "Cu", "A"]


def test_unsupported_layer_refused_before_writing(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_points(np.zeros((2, 2)), name="spots")
    verts = np.array([[0, 0], [0, 1], [1, 0]], float)
    viewer.add_surface((verts, np.array([[0, 1, 2]])), name="mesh")
    path = tmp_path / "mix.emd"
    with pytest.raises(EMDError, match=r"layer 'mesh' is a surface layer"):
        viewer.layers.save(str(path), plugin=PLUGIN)
    assert list(tmp_path.iterdir()) == []


def test_save_dialog_offers_emd_for_every_mix(make_napari_viewer):
    from napari.plugins._npe2 import file_extensions_string_for_layers

    viewer = make_napari_viewer()
    img = viewer.add_image(np.zeros((4, 4)))
    lab = viewer.add_labels(np.zeros((4, 4), np.uint8))
    pts = viewer.add_points(np.zeros((1, 2)))
    shp = viewer.add_shapes([np.array([[0, 0], [1, 1], [1, 0]])], shape_type="polygon")
    vec = viewer.add_vectors(np.zeros((1, 2, 2)))
    trk = viewer.add_tracks(np.array([[0, 0, 1, 1]]))
    for layers in ([pts], [shp], [vec], [trk], [img, pts, shp], [lab, pts, vec, trk]):
        text, _writers = file_extensions_string_for_layers(layers)
        assert "NCEM EMD (*.emd)" in text


def test_save_selected_points_layer(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = viewer.add_points(np.array([[1.0, 2.0]]), name="one")
    viewer.layers.selection = {layer}
    path = tmp_path / "sel.emd"
    assert viewer.layers.save(str(path), selected=True, plugin=PLUGIN) == [str(path)]
    assert _state(path, "one")["layer_type"] == "points"


def test_reopened_session_saves_again_the_same(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    viewer.add_points(np.array([[1.0, 2.0], [3.0, 4.0]]), name="spots", scale=(2, 2),
                      features=_features(2), text="{label}")
    viewer.add_shapes([np.array([[0, 0], [4, 4]])], shape_type="line", name="cut")
    first, second = tmp_path / "a.emd", tmp_path / "b.emd"
    viewer.layers.save(str(first), plugin=PLUGIN)
    viewer2 = _reopen(make_napari_viewer, first)
    viewer2.layers.save(str(second), plugin=PLUGIN)
    viewer3 = _reopen(make_napari_viewer, second)
    for name in ("spots", "cut"):  # the same state, now naming the file it came from
        again = _state(second, name)
        assert again.pop("metadata")["emd"]["source"] == str(first)
        assert again == {k: v for k, v in _state(first, name).items() if k != "metadata"}
    np.testing.assert_allclose(viewer3.layers["spots"].data, viewer.layers["spots"].data)
    pd.testing.assert_frame_equal(viewer3.layers["spots"].features,
                                  viewer.layers["spots"].features)
