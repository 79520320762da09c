"""File-wide Velox metadata: names, element selections, time zone, and the mapping of a
dataset's Velox metadata onto HyperSpy's metadata tree.

Names: before version 11 the ``Operations`` group tells which detector or processing step
(DPC, iDPC, FFT...) made each image and ``Presentation/Displays`` label them; from version
11 on ``Displays/ImageDisplay`` -> ``SharedProperties`` references do.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import urllib.parse
from typing import Any

import h5py

from ...errors import EMDError
from .calibration import elements_from_selection, indexed_detector
from .jsontree import (
    copy_tree,
    get,
    json_dataset,
    last_part,
    metadata_column,
    parse_tree,
    to_float,
    version_json,
    warn,
)

# Groups whose JSON is kept whole in every dataset's original_metadata.
GLOBAL_GROUPS = ("Operations", "SharedProperties", "Displays", "Features", "Presentation")

_LOG_OFFSET = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-])(\d\d):?(\d\d)")


class VeloxMetadata:
    """The file-wide part of a Velox file's metadata, parsed once per read: the version,
    the global JSON trees, the names Velox shows for each image (display labels,
    operations), the element selections and the acquisition's time zone; and the mapping
    of a dataset's own metadata onto HyperSpy's tree."""

    def __init__(self, path: str, f: h5py.File) -> None:
        self.path = path
        self.f = f
        parsed, text = version_json(f)
        if parsed is None:
            warn(f"{path}: the Version text is damaged ({text[:60]!r}); the layout is "
                  "guessed from the groups present")
            parsed = {}
        self.version_info = parsed
        try:
            self.version: int | None = int(str(parsed.get("version", "")).strip())
        except ValueError:
            self.version = None
        data = f.get("Data")
        if not isinstance(data, h5py.Group):
            raise EMDError(path, "Velox file without a 'Data' group: nothing to read")
        self.data = data
        self.trees: dict[str, Any] = {}
        for name in GLOBAL_GROUPS:
            g = f.get(name)
            if isinstance(g, h5py.Group):
                self.trees[name] = parse_tree(g, name)
        self.file_tree: dict[str, Any] = {"Version": parsed, **self.trees}
        for name in ("Experiment", "Info"):
            v = json_dataset(f.get(name), name)
            if v is not None:
                self.file_tree[name] = v
        self.new_layout = (
            self.version >= 11 if self.version is not None else "Displays" in self.trees
        )
        self.labels, self.display_info = self._display_labels()
        self.op_names = self._operation_names()
        self.elements_eds, self.elements_eels = self._element_selection()
        self.time_zone = self._log_time_zone()
        self._meta_cache: dict[str, dict[str, Any]] = {}

    # -- names ---------------------------------------------------------------------------

    def _display_labels(self) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
        """Image key -> Velox display name, and the display JSON per image key."""
        labels: dict[str, str] = {}
        info: dict[str, dict[str, Any]] = {}
        # Velox < 11: Presentation/Displays/ImageDisplay/<id> {display: {label}, dataPath}
        pres = get(self.trees, "Presentation", "Displays", "ImageDisplay")
        if isinstance(pres, dict):
            for v in pres.values():
                if not isinstance(v, dict):
                    continue
                key = last_part(v.get("dataPath"))
                label = get(v, "display", "label")
                if key and label:
                    labels.setdefault(key, urllib.parse.unquote(str(label)))
                    info.setdefault(key, v)
        # Velox >= 11: Displays/ImageDisplay/<id> {data: /SharedProperties/..., id, title}
        disp = get(self.trees, "Displays", "ImageDisplay")
        if isinstance(disp, dict):
            for v in disp.values():
                if not isinstance(v, dict) or not v.get("data"):
                    continue
                ref = self._resolve(v["data"])
                key = last_part(ref.get("dataPath")) if isinstance(ref, dict) else ""
                name = v.get("id") or v.get("title")
                if key and name:
                    labels[key] = str(name)
                    info[key] = v
        return labels, info

    def _resolve(self, ref: str) -> Any:
        """The JSON at an absolute reference like ``/SharedProperties/X/<id>``."""
        parts = [p for p in str(ref).split("/") if p]
        node: Any = self.trees
        for p in parts:
            if not isinstance(node, dict) or p not in node:
                return json_dataset(self.f.get(ref), ref)
            node = node[p]
        return node

    def _operation_names(self) -> dict[str, str]:
        """Image key -> detector or product name from the Operations graph (Velox < 11)."""
        ops = self.trees.get("Operations")
        names: dict[str, str] = {}
        if not isinstance(ops, dict):
            return names

        def each(kind: str):
            group = ops.get(kind)
            if isinstance(group, dict):
                for op_id, op in group.items():
                    if isinstance(op, dict):
                        yield op_id, op

        stem_inputs: dict[str, list[tuple[str, str]]] = {}
        for _, op in each("CameraInputOperation"):
            if op.get("cameraName"):
                names[last_part(op.get("dataPath"))] = str(op["cameraName"])
        for _, op in each("StemInputOperation"):
            det = op.get("detector")
            if not det:
                continue
            names[last_part(op.get("dataPath"))] = str(det)
            for out in op.get("outputs") or []:
                if isinstance(out, dict):
                    target = last_part(out.get("operation"))
                    stem_inputs.setdefault(target, []).append(
                        (str(out.get("inputIndex", "")), str(det))
                    )
        for op_id, op in each("MathematicsOperation"):
            inputs = sorted(stem_inputs.get(op_id, []))
            segs = [d.rsplit("-", 1)[-1] for _, d in inputs]
            if len(segs) == 2 and op.get("mathematicsMode", "Subtraction") == "Subtraction":
                name = f"{segs[0]}-{segs[1]}"
            else:  # fall back on the order Velox writes the two difference images in
                first = (op.get("outputs") or [{}])[0]
                name = "A-C" if str(first.get("inputIndex")) == "0" else "B-D"
            names[last_part(op.get("dataPath"))] = name
        for _, op in each("SurfaceReconstructionOperation"):
            kind = "iDPC" if str(op.get("integrationMode")).lower() == "true" else "dDPC"
            if op.get("unfilteredDataPath"):
                names[last_part(op["unfilteredDataPath"])] = kind
            filtered = str(op.get("enableFilter")).lower() == "true"
            names[last_part(op.get("dataPath"))] = f"Filtered {kind}" if filtered else kind
        for _, op in each("DpcOperation"):
            names[last_part(op.get("dataPath"))] = "DPC"
        for _, op in each("IntegrationOperation"):
            names[last_part(op.get("dataPath"))] = "DCFI"
        for _, op in each("FftOperation"):
            names[last_part(op.get("imageOutputPath"))] = "Half FFT"
        names.pop("", None)
        return names

    def _element_selection(self) -> tuple[list[str], list[str]]:
        eds: list[str] = []
        eels: list[str] = []
        for v in (get(self.trees, "SharedProperties", "EDSSpectrumQuantificationSettings")
                  or {}).values():
            if isinstance(v, dict):
                eds += elements_from_selection(v.get("elementSelection"))
        for v in (get(self.trees, "SharedProperties", "EELSSpectrumQuantificationSettings")
                  or {}).values():
            if isinstance(v, dict):
                eels += elements_from_selection(v.get("elementSelection"))
        for kind in ("ImageQuantificationOperation", "SpectrumQuantificationOperation"):
            for v in (get(self.trees, "Operations", kind) or {}).values():
                if isinstance(v, dict):
                    eds += elements_from_selection(v.get("elementSelection"))
        return sorted(set(eds)), sorted(set(eels))

    def _log_time_zone(self) -> _dt.tzinfo | None:
        """The acquisition's UTC offset, from the experiment log's time stamps."""
        ref = get(self.file_tree, "Experiment", "log")
        if not ref:
            return None
        text = get(json_dataset(self.f.get(ref), ref), "text")
        if not isinstance(text, str):
            return None
        m = _LOG_OFFSET.search(urllib.parse.unquote(text))
        if not m:
            return None
        sign = 1 if m.group(1) == "+" else -1
        return _dt.timezone(sign * _dt.timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))

    # -- metadata ------------------------------------------------------------------------

    def metadata(
        self, meta: dict[str, Any], signal_type: str = "", eds_detector: dict | None = None,
        elements: list[str] | None = None,
    ) -> dict[str, Any]:
        general: dict[str, Any] = {}
        stamp = to_float(get(meta, "Acquisition", "AcquisitionStartDatetime", "DateTime"))
        if not stamp:
            custom = meta.get("CustomProperties")
            if isinstance(custom, dict):
                for k, v in custom.items():
                    if k.endswith(".TimeStamp"):
                        us = to_float(get(v, "value"))
                        if us:
                            stamp = us / 1e6
                            break
        if stamp:
            tz = self.time_zone or _dt.timezone.utc
            try:
                when = _dt.datetime.fromtimestamp(stamp, tz=tz)
            except (OverflowError, OSError, ValueError):
                when = None
            if when is not None:
                general["date"] = when.date().isoformat()
                general["time"] = when.time().replace(microsecond=0).isoformat()
                general["time_zone"] = "UTC" if tz is _dt.timezone.utc else when.tzname()
        tem: dict[str, Any] = {}
        hv = to_float(get(meta, "Optics", "AccelerationVoltage"))
        if hv is not None:
            tem["beam_energy"] = hv / 1000.0
        mag = to_float(get(meta, "CustomProperties", "StemMagnification", "value"))
        if mag is not None:
            tem["magnification"] = mag
        cl = to_float(get(meta, "Optics", "CameraLength"))
        if cl is not None:
            tem["camera_length"] = cl * 1000.0
        model = get(meta, "Instrument", "InstrumentModel") or get(
            meta, "Instrument", "InstrumentClass"
        )
        if model:
            tem["microscope"] = str(model)
        stage: dict[str, Any] = {}
        for key, name in (("AlphaTilt", "tilt_alpha"), ("BetaTilt", "tilt_beta")):
            v = to_float(get(meta, "Stage", key))
            if v is not None:
                stage[name] = round(math.degrees(v), 3)
        for axis in ("x", "y", "z"):
            v = to_float(get(meta, "Stage", "Position", axis))
            if v is not None:
                stage[axis] = round(v * 1e3, 6)  # m -> mm (HyperSpy's stage unit)
        if stage:
            tem["Stage"] = stage
        if eds_detector:
            eds: dict[str, Any] = {}
            for key, name in (("AzimuthAngle", "azimuth_angle"),
                              ("ElevationAngle", "elevation_angle")):
                v = to_float(eds_detector.get(key))
                if v is not None:
                    eds[name] = round(math.degrees(v), 3)
            for key, name in (("LiveTime", "live_time"), ("RealTime", "real_time")):
                v = to_float(eds_detector.get(key))
                if v is not None:
                    eds[name] = v
            if eds:
                tem["Detector"] = {"EDS": eds}
        md: dict[str, Any] = {"General": general, "Signal": {"signal_type": signal_type}}
        if tem:
            md["Acquisition_instrument"] = {"TEM": tem}
        md["Sample"] = {"elements": list(elements or [])}
        return md

    def original(
        self, meta: dict[str, Any], fresh: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any]:
        # each dataset owns its tree: editing one (a layer's metadata) must not change
        # its siblings. ``fresh`` entries were made for this dataset alone (parsed per
        # frame, built here): they are not copied again
        om = copy_tree(meta)
        om.update({k: copy_tree(v) for k, v in extra.items() if v is not None})
        om.update({k: v for k, v in (fresh or {}).items() if v is not None})
        om.update(copy_tree(self.file_tree))
        return om

    # -- images --------------------------------------------------------------------------

    def image_title(self, key: str, meta: dict[str, Any]) -> str:
        label = self.labels.get(key)
        op = self.op_names.get(key)
        det = indexed_detector(meta)
        det_name = det.get("DetectorName") if det else None
        binary = get(meta, "BinaryResult", "Detector")
        order = (label, op) if self.new_layout else (op, label)
        for name in (*order, det_name, binary):
            if name:
                return str(name)
        return "Image"

    def image_meta(self, g: h5py.Group, where: str) -> dict[str, Any]:
        """Frame 0's metadata of an image group, parsed once per read."""
        if g.name not in self._meta_cache:
            self._meta_cache[g.name] = metadata_column(g.get("Metadata"), 0, where)
        return self._meta_cache[g.name]
