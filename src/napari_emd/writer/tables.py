"""Arrays stored next to a data group's ``data``: feature tables and per-element arrays.

A napari annotation layer has more than one array: point sizes, shape types, a
``features`` table with one column per measurement. They are stored as plain HDF5
datasets inside the layer's EMD data group (never named ``data*``, so EMD readers still
find exactly one data array per group), readable with h5py alone:

``features/<column>``
    one dataset per column, in column order, with attributes ``name`` (the column's
    name), ``kind`` (``number``, ``bool``, ``text``, ``category``, ``json``,
    ``datetime``, ``timedelta``) and ``dtype`` (the pandas/numpy dtype to restore).
    Numbers and booleans are stored as they are, text as UTF-8 strings, a categorical
    column as its values (text or numbers) with the attribute ``ordered``, dates and
    durations as int64 nanoseconds, and object columns holding lists, dicts or arrays as
    one JSON text per row (``element_dtype`` names the dtype of array elements).
``feature_categories/<column>``
    the categories of a categorical column, in their order (unused ones included).
``feature_missing/<column>``
    a boolean mask, only for a column with missing values its stored form cannot hold
    (text, categories, pandas' nullable integers and booleans; float NaN is stored as
    NaN).

:func:`table_items` encodes a table (validating everything before any file is opened),
:func:`write_items` writes encoded items into a group and :func:`decode_table` turns what
:func:`napari_emd.formats.emd0.group_extras` read back into a pandas DataFrame.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import h5py
import numpy as np

from ..errors import EMDError
from .jsonattrs import set_attr

FEATURES = "features"
CATEGORIES = "feature_categories"
MISSING = "feature_missing"


class Item(NamedTuple):
    """One dataset to store: its array and its attributes."""

    data: np.ndarray
    attrs: dict[str, Any]


#: Encoded items: a name maps to an :class:`Item` (a dataset) or to Items (a subgroup).
Items = dict[str, Any]


def text_array(values: Any) -> np.ndarray:
    """An object array of ``str`` (what h5py stores as UTF-8 variable-length text)."""
    arr = np.empty(len(values), dtype=object)
    arr[:] = [str(v) for v in values]
    return arr


def items_nbytes(items: Items | None) -> int:
    """Bytes the items take on disk, about (text counted generously)."""
    total = 0
    for item in (items or {}).values():
        if isinstance(item, Mapping):
            total += items_nbytes(item) + 1024
        else:
            arr = item.data
            per = 64 if arr.dtype.kind == "O" else arr.dtype.itemsize
            total += arr.size * per + 512
    return total


def write_items(group: h5py.Group, items: Items | None) -> None:
    """Store encoded items in ``group``: datasets and subgroups, in their order."""
    for name, item in (items or {}).items():
        if isinstance(item, Mapping):
            write_items(group.create_group(name, track_order=True), item)
            continue
        arr = item.data
        dtype = h5py.string_dtype("utf-8") if arr.dtype.kind in "OU" else arr.dtype
        if arr.dtype.kind == "U":
            arr = arr.astype(object)
        dset = group.create_dataset(name, data=arr, dtype=dtype)
        for key, value in item.attrs.items():
            set_attr(dset, key, value, where="dataset attribute")


# --- encoding a table -----------------------------------------------------------------


def table_items(path: str | None, where: str, table: Any) -> Items:
    """The items storing ``table`` (a pandas DataFrame or a mapping of column name to
    values): ``features``, plus ``feature_categories`` and ``feature_missing`` when
    needed. Raises :class:`EMDError` naming ``where`` and the column for values an EMD
    file cannot hold (arbitrary Python objects), before anything is written."""
    columns = _columns(table)
    if not columns:
        return {}
    features: Items = {}
    categories: Items = {}
    missing: Items = {}
    names = dataset_names([name for name, _ in columns])
    for key, (name, values) in zip(names, columns, strict=True):
        item, cats, mask = encode_column(path, f"{where}, feature {name!r}", values)
        item.attrs["name"] = str(name)
        features[key] = item
        if cats is not None:
            categories[key] = cats
        if mask is not None:
            missing[key] = Item(mask, {})
    out: Items = {FEATURES: features}
    if categories:
        out[CATEGORIES] = categories
    if missing:
        out[MISSING] = missing
    return out


def _columns(table: Any) -> list[tuple[Any, Any]]:
    if table is None:
        return []
    if hasattr(table, "columns") and hasattr(table, "__getitem__"):  # a DataFrame
        return [(name, table[name]) for name in table.columns]
    if isinstance(table, Mapping):
        return list(table.items())
    raise ValueError(f"a feature table is a DataFrame or a dict, not {type(table).__name__}")


def dataset_names(names: list[Any], fallback: str = "column") -> list[str]:
    """HDF5-safe, unique names (``/`` is a path separator; ``.`` and ``..`` are taken):
    the second ``a`` becomes ``a (2)``, an empty name ``fallback``."""
    out: list[str] = []
    seen: set[str] = set()
    for name in names:
        base = str(name).replace("/", "_").strip() or fallback
        if base in (".", ".."):
            base = f"{fallback} {base}"
        key, n = base, 1
        while key in seen:
            n += 1
            key = f"{base} ({n})"
        seen.add(key)
        out.append(key)
    return out


def encode_column(
    path: str | None, where: str, values: Any
) -> tuple[Item, Item | None, np.ndarray | None]:
    """One column -> (its dataset, its categories or None, its missing mask or None)."""
    dtype = getattr(values, "dtype", None)
    dtype_name = str(dtype) if dtype is not None else "object"
    if dtype_name == "category":
        return _encode_category(path, where, values)
    if dtype is not None and not isinstance(dtype, np.dtype):
        return _encode_extension(path, where, values, dtype_name)
    arr = np.asarray(values)
    kind = arr.dtype.kind
    if kind in "iufc":
        return Item(arr, {"kind": "number", "dtype": arr.dtype.str}), None, None
    if kind == "b":
        return Item(arr, {"kind": "bool", "dtype": "bool"}), None, None
    if kind in "mM":
        name = "datetime" if kind == "M" else "timedelta"
        return Item(arr.view(np.int64), {"kind": name, "dtype": arr.dtype.str}), None, None
    if kind == "U":
        return Item(arr.astype(object), {"kind": "text", "dtype": "object"}), None, None
    if kind == "S":
        text = [bytes(v).decode("utf-8", "replace") for v in arr]
        return Item(text_array(text), {"kind": "text", "dtype": "object"}), None, None
    if kind == "O":
        return _encode_objects(path, where, list(arr))
    raise EMDError(path, f"{where}: values of dtype {arr.dtype} cannot be stored in an EMD "
                         "file; convert them to numbers or text first")


def _encode_category(
    path: str | None, where: str, values: Any
) -> tuple[Item, Item | None, np.ndarray | None]:
    cat = values.cat if hasattr(values, "cat") else values
    categories = np.asarray(cat.categories)
    codes = np.asarray(cat.codes, dtype=np.int64)
    cat_item, _, cat_missing = encode_column(path, f"{where} (categories)", categories)
    if cat_missing is not None or cat_item.attrs["kind"] not in ("number", "text", "bool"):
        raise EMDError(path, f"{where}: categories must be numbers or text to be stored")
    stored = cat_item.data
    mask = codes < 0
    if len(stored):
        vals = stored[np.where(mask, 0, codes)]
    else:
        vals = np.empty(len(codes), dtype=stored.dtype)
        if stored.dtype.kind == "O":
            vals[:] = ""
    attrs = {"kind": "category", "dtype": "category", "ordered": bool(cat.ordered),
             "categories_dtype": cat_item.attrs["dtype"]}
    return Item(vals, attrs), Item(stored, {}), (mask if mask.any() else None)


def _encode_extension(
    path: str | None, where: str, values: Any, dtype_name: str
) -> tuple[Item, Item | None, np.ndarray | None]:
    """pandas extension dtypes: nullable ``Int64``/``Float64``/``boolean``, ``string``,
    time-zone aware dates (refused), anything else through its numpy form."""
    if dtype_name.startswith("datetime64[") and "," in dtype_name:
        raise EMDError(path, f"{where}: time-zone aware dates cannot be stored; convert them "
                             "to UTC (tz_convert(None)) or to text first")
    isna = np.asarray(values.isna()) if hasattr(values, "isna") else None
    mask = isna if isna is not None and isna.any() else None
    low = dtype_name.lower()
    if low.startswith("string") or low == "str":
        text = ["" if m else str(v) for v, m in zip(values, _or_false(mask, len(values)))]
        return Item(text_array(text), {"kind": "text", "dtype": dtype_name}), None, mask
    if low == "boolean":
        arr = np.asarray(values.fillna(False), dtype=bool)
        return Item(arr, {"kind": "bool", "dtype": dtype_name}), None, mask
    if low.startswith(("int", "uint", "float")):
        np_dtype = np.dtype(low)
        arr = np.asarray(values.fillna(0) if mask is not None else values).astype(np_dtype)
        if np_dtype.kind == "f" and mask is not None:
            arr[mask] = np.nan
        return Item(arr, {"kind": "number", "dtype": dtype_name}), None, mask
    return encode_column(path, where, np.asarray(values))


def _or_false(mask: np.ndarray | None, n: int) -> np.ndarray:
    return mask if mask is not None else np.zeros(n, dtype=bool)


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA and NaT."""
    if value is None:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    return type(value).__name__ in ("NAType", "NaTType")


def _encode_objects(
    path: str | None, where: str, values: list[Any]
) -> tuple[Item, Item | None, np.ndarray | None]:
    present = [v for v in values if not is_missing(v)]
    mask = np.array([is_missing(v) for v in values], dtype=bool)
    if all(isinstance(v, str) for v in present):
        text = ["" if m else v for v, m in zip(values, mask)]
        return (Item(text_array(text), {"kind": "text", "dtype": "object"}), None,
                mask if mask.any() else None)
    rows = []
    for v in values:
        try:
            rows.append(json.dumps(_plain(v), ensure_ascii=False))
        except (TypeError, ValueError) as err:
            raise EMDError(path, f"{where} holds {type(v).__name__} values, which an EMD file "
                                 "cannot store (text, numbers, lists, dicts and arrays can "
                                 f"be); convert the column to text or numbers first ({err})"
                           ) from err
    attrs: dict[str, Any] = {"kind": "json", "dtype": "object"}
    dtypes = {v.dtype.str for v in present if isinstance(v, np.ndarray)}
    if present and len(dtypes) == 1 and all(isinstance(v, np.ndarray) for v in present):
        attrs["element_dtype"] = dtypes.pop()
    return Item(text_array(rows), attrs), None, None


def _plain(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data, or TypeError for what JSON cannot hold faithfully."""
    if depth > 32:
        raise TypeError("nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return None if is_missing(value) else value
    if isinstance(value, np.generic):
        if isinstance(value, (np.void, np.complexfloating, np.datetime64, np.timedelta64)):
            raise TypeError(f"{type(value).__name__} has no JSON form")
        return _plain(value.item(), depth + 1)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufU":
            raise TypeError(f"arrays of dtype {value.dtype} have no JSON form")
        return _plain(value.tolist(), depth + 1)
    if isinstance(value, (list, tuple)):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} has no JSON form")


# --- decoding -------------------------------------------------------------------------


def decode_table(extras: Mapping[str, Any], n_rows: int) -> Any:
    """The pandas DataFrame stored by :func:`table_items`, from the group's extras as
    :func:`napari_emd.formats.emd0.group_extras` reads them (an empty DataFrame of
    ``n_rows`` rows when the group holds no table). Needs pandas."""
    import pandas as pd

    features = extras.get(FEATURES)
    if not isinstance(features, Mapping) or not features:
        return pd.DataFrame(index=pd.RangeIndex(n_rows))
    categories = extras.get(CATEGORIES) if isinstance(extras.get(CATEGORIES), Mapping) else {}
    missing = extras.get(MISSING) if isinstance(extras.get(MISSING), Mapping) else {}
    columns: dict[Any, Any] = {}
    for key, item in features.items():
        if isinstance(item, Mapping):
            continue
        data, attrs = item
        mask = missing.get(key)
        mask = np.asarray(mask[0], dtype=bool) if mask is not None else None
        name = attrs.get("name", key)
        columns[name] = _decode_column(pd, np.asarray(data), attrs, categories.get(key), mask)
    return pd.DataFrame(columns, index=pd.RangeIndex(n_rows) if not columns else None)


def _decode_column(pd: Any, data: np.ndarray, attrs: Mapping[str, Any], cats: Any,
                   mask: np.ndarray | None) -> Any:
    kind = str(attrs.get("kind", "number"))
    dtype = str(attrs.get("dtype", ""))
    if kind == "category":
        categories = np.asarray(cats[0]) if cats is not None else np.unique(data)
        cdt = str(attrs.get("categories_dtype", ""))
        if categories.dtype.kind not in "O" and cdt:
            categories = categories.astype(np.dtype(cdt))
        values = pd.Categorical(data, categories=categories,
                                ordered=bool(attrs.get("ordered", False)))
        if mask is not None:
            codes = np.where(mask, -1, values.codes)
            values = pd.Categorical.from_codes(codes, dtype=values.dtype)
        return pd.Series(values)
    if kind in ("datetime", "timedelta"):
        return pd.Series(data.astype(np.int64).view(np.dtype(dtype)))
    if kind == "json":
        element = attrs.get("element_dtype")
        rows = [json.loads(str(v)) for v in data]
        if element:
            rows = [np.asarray(v, dtype=np.dtype(str(element))) if v is not None else None
                    for v in rows]
        out = np.empty(len(rows), dtype=object)
        out[:] = rows
        return pd.Series(out, dtype=object)
    if kind == "text":
        out = np.asarray(data, dtype=object)
        if mask is not None:
            out = out.copy()
            out[mask] = None
        series = pd.Series(out, dtype=object)
        if dtype and dtype != "object":  # pandas' string dtypes ("str", "string")
            with contextlib.suppress(TypeError, ValueError):
                series = series.astype(dtype)
        return series
    series = pd.Series(data)
    if (dtype and dtype[0].isupper()) or dtype == "boolean":  # pandas nullable dtypes
        series = series.astype(dtype)
        if mask is not None:
            series = series.mask(pd.Series(mask))
        return series
    if dtype and kind == "number" and dtype != data.dtype.str:
        series = series.astype(np.dtype(dtype))
    return series
