"""Writing NCEM EMD 0.2 files: the RosettaSciIO-style :func:`file_writer` and a
multi-signal :func:`write_signals` used by the napari writer.

Layout written (EMD 0.2 as specified at emdatasets.com, as RosettaSciIO and ncempy read it)::

    /                       attrs version_major=0, version_minor=2, **kwds
    /data/<title>/          attrs emd_group_type=1, title, signal_type,
                                  metadata (JSON), original_metadata (JSON),
                                  [napari_layer (JSON), when written from napari]
    /data/<title>/data      the array, stored with its axes reversed (see below)
    /data/<title>/dim1..N   axis coordinates, attrs name and units ("[n_m]" style)
    /microscope /sample /user /comments   spec groups (attrs from original_metadata)

Axis order: ``dimK`` describes axis K-1 of the stored HDF5 array. RosettaSciIO stores
``data.T`` and reverses the dims on reading, so we store the array reversed too: a signal
of numpy shape ``(z, y, x)`` is stored as ``(x, y, z)`` with ``dim1`` = x. RosettaSciIO
and napari-emd read it back as ``(z, y, x)``; ncempy returns the stored ``(x, y, z)``
order with dims that match.

Modules: :mod:`.prepare` (validation, dtypes, axes, chunks), :mod:`.layout` (the groups
and arrays), :mod:`.safefile` (temporary file, atomic replace, disk space),
:mod:`.jsonattrs` (metadata as JSON attributes), :mod:`.tables` (feature tables and other
arrays stored next to ``data``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import h5py

from ..errors import EMDError
from ..model import NAPARI_LAYER_ATTR
from .jsonattrs import jsonable, to_json
from .layout import (
    DATA_GROUP,
    EMD_VERSION,
    SPEC_GROUPS,
    Progress,
    ProgressCallback,
    write_group,
    write_root,
)
from .prepare import Prepared, chunks_for, default_chunks, group_paths, prepare
from .safefile import (
    HDF5WriteError,
    abandon,
    atomic_replace,
    check_target,
    hdf5_writes,
    reserve_space,
)
from .tables import Items, items_nbytes

_RESERVED_ROOT_ATTRS = ("version_major", "version_minor")


def file_writer(
    filename: str | os.PathLike,
    signal: Mapping[str, Any],
    chunks: Sequence[int] | bool | None = None,
    *,
    progress: ProgressCallback | None = None,
    **kwds: Any,
) -> None:
    """Write one signal to an NCEM EMD 0.2 file (RosettaSciIO's ``file_writer`` contract).

    Parameters
    ----------
    filename
        Target path. An existing file is replaced, atomically, only once the new file is
        complete.
    signal
        A dict with ``data`` (numpy or dask array), ``axes`` (list of dicts with ``name``,
        ``units``, ``index_in_array``, ``navigate`` and ``size``/``offset``/``scale`` or an
        ``axis`` coordinate vector) and ``metadata`` (HyperSpy-style tree; the group is
        named after ``metadata["General"]["title"]``). ``original_metadata`` is optional.
    chunks
        HDF5 chunk shape in numpy order of ``data``; ``None`` picks about 1 MiB chunks that
        keep whole signals (the non-navigation axes) together, ``True`` lets h5py guess,
        ``False`` stores the array contiguously.
    progress
        Optional ``progress(done, total)`` callable, called after each written block.
    **kwds
        Stored as attributes of the file's root group (dicts and lists as JSON text).

    Raises
    ------
    EMDError
        The file cannot be written (folder missing, disk full, unsupported dtype...).
    ValueError
        The signal dict or the options are malformed.
    """
    write_signals(filename, [signal], chunks=chunks, progress=progress, **kwds)


def write_signals(
    filename: str | os.PathLike,
    signals: Sequence[Mapping[str, Any]],
    chunks: Sequence[int] | bool | None = None,
    *,
    progress: ProgressCallback | None = None,
    group_attrs: Sequence[Mapping[str, Any] | None] | None = None,
    group_items: Sequence[Items | None] | None = None,
    **kwds: Any,
) -> str:
    """Write several signals into one NCEM EMD 0.2 file, one data group each.

    Arguments are those of :func:`file_writer`; ``group_attrs`` optionally gives, per
    signal, extra attributes of its EMD data group (dicts and lists stored as JSON text;
    the napari writer stores the layer state this way) and ``group_items`` extra arrays
    stored in the group next to ``data`` (:mod:`.tables`: feature tables, per-element
    arrays). ``chunks``, when a shape, applies to every signal of matching
    dimensionality. Returns the absolute path written.
    """
    path = os.path.abspath(os.fspath(filename))
    if not signals:
        raise ValueError("nothing to write: no signals given")
    if group_attrs is not None and len(group_attrs) != len(signals):
        raise ValueError("group_attrs must have one entry per signal")
    if group_items is not None and len(group_items) != len(signals):
        raise ValueError("group_items must have one entry per signal")
    for key in kwds:
        if key in _RESERVED_ROOT_ATTRS:
            raise ValueError(f"{key!r} is set by the writer and cannot be given")
    prepared = [prepare(path, s, chunks_for(s, chunks, len(signals))) for s in signals]
    if group_items is not None:
        for prep, items in zip(prepared, group_items, strict=True):
            prep.items = items
    names = group_paths([p.title for p in prepared])
    check_target(path, sum(p.nbytes + items_nbytes(p.items) for p in prepared))

    total = sum(p.n_blocks for p in prepared)
    counter = Progress(progress, total)
    with atomic_replace(path) as tmp:
        try:
            # Reserve the disk space first: a full disk then fails here, cleanly, and not
            # in the middle of HDF5's writes (libhdf5 handles a failing flush badly).
            h5py.File(tmp, "w").close()
            reserve_space(path, tmp, estimate_size(prepared, group_attrs))
            f = h5py.File(tmp, "r+", rdcc_nbytes=16 << 20)
            try:
                with hdf5_writes():
                    write_root(f, prepared, kwds)
                    container = f.create_group(DATA_GROUP, track_order=True)
                for i, (prep, name) in enumerate(zip(prepared, names, strict=True)):
                    extra = group_attrs[i] if group_attrs is not None else None
                    with hdf5_writes():
                        group = container.create_group(name)
                        if "/" in name:  # a numbered folder: says whose it is
                            group.parent.attrs["title"] = prep.title
                    write_group(path, group, prep, extra, counter)
                with hdf5_writes():
                    f.close()  # flushes: can fail too (disk full); HDF5 trims the reserve
            except BaseException:
                abandon(f, tmp)
                raise
        except (OSError, HDF5WriteError) as err:
            # a RuntimeError of the caller's own (a failing dask chunk) is not caught
            raise EMDError(path, f"writing failed: {err}") from err
    counter.finish()
    return path


def estimate_size(
    prepared: list[Prepared], group_attrs: Sequence[Mapping[str, Any] | None] | None
) -> int:
    """A generous estimate of the file size: data, dim vectors, metadata, overhead."""
    total = 1 << 20
    for prep in prepared:
        total += prep.nbytes + sum(8 * max(2, a["size"]) for a in prep.axes) + 4096
        total += items_nbytes(prep.items)
        total += len(to_json(prep.metadata)) + len(to_json(prep.original_metadata))
        if prep.numpy_dtype.kind in "UO":
            total += prep.nbytes * 2
    for extra in group_attrs or []:
        total += len(to_json(extra or {}))
    return int(total * 1.02)


__all__ = [
    "DATA_GROUP",
    "EMD_VERSION",
    "NAPARI_LAYER_ATTR",
    "SPEC_GROUPS",
    "ProgressCallback",
    "default_chunks",
    "file_writer",
    "jsonable",
    "to_json",
    "write_signals",
]
