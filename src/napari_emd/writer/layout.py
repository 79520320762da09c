"""Writing the NCEM EMD 0.2 layout: the root attributes and spec groups, one data group per
signal (its array stored with the axes reversed, ``dim1..N`` vectors, metadata as JSON
attributes), dask data block by block with progress."""

from __future__ import annotations

import contextlib
import datetime
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from ..h5 import H5_LOCK
from ..version import __version__
from .jsonattrs import set_attr, to_json
from .safefile import hdf5_writes
from .tables import text_array, write_items

if TYPE_CHECKING:
    from .prepare import Prepared

#: Progress callback: called as ``progress(done, total)`` with counts of written blocks.
ProgressCallback = Callable[[int, int], Any]

EMD_VERSION = (0, 2)


#: Name of the top-level group holding the EMD data groups (as the EMD 0.2 spec shows).
DATA_GROUP = "data"


#: The root groups the EMD 0.2 specification lists next to the data.
SPEC_GROUPS = ("microscope", "sample", "user", "comments")


#: Group attribute with the napari layer state (JSON), see :mod:`napari_emd.plugin.writer`.


class Progress:
    def __init__(self, callback: ProgressCallback | None, total: int) -> None:
        self.callback = callback
        self.total = total
        self.done = 0
        self.lock = threading.Lock()

    def step(self, n: int = 1) -> None:
        if n <= 0:
            return
        with self.lock:
            self.done += n
            done = self.done
        if self.callback is not None:
            self.callback(done, self.total)

    def finish(self) -> None:
        if self.done < self.total:
            self.step(self.total - self.done)


def write_root(f: h5py.File, prepared: list[Prepared], kwds: Mapping[str, Any]) -> None:
    f.attrs["version_major"] = np.int64(EMD_VERSION[0])
    f.attrs["version_minor"] = np.int64(EMD_VERSION[1])
    for key, value in kwds.items():
        set_attr(f, str(key), value, where="root attribute")
    groups = {name: f.create_group(name) for name in SPEC_GROUPS}
    for prep in prepared:
        for name in SPEC_GROUPS:
            src = prep.original_metadata.get(name)
            if not isinstance(src, Mapping):
                continue
            for key, value in src.items():
                if str(key) not in groups[name].attrs:
                    set_attr(groups[name], str(key), value, where=f"{name} attribute")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    groups["comments"].attrs[stamp] = f"written by napari-emd-io {__version__}"


def write_group(
    path: str,
    group: h5py.Group,
    prep: Prepared,
    extra: Mapping[str, Any] | None,
    counter: Progress,
) -> None:
    data = prep.data
    ndim = data.ndim
    arr = None
    if prep.source is None:
        # the caller's data, computed before any HDF5 call: its errors are its own
        arr = np.asarray(data.compute() if prep.is_dask else data)
        if ndim:
            arr = arr.T
    with hdf5_writes():
        group.attrs["emd_group_type"] = np.int64(1)
        group.attrs["title"] = prep.title
        signal_md = prep.metadata.get("Signal")
        signal_type = signal_md.get("signal_type", "") if isinstance(signal_md, Mapping) \
            else ""
        group.attrs["signal_type"] = str(signal_type or "")
        group.attrs["metadata"] = to_json(prep.metadata)
        group.attrs["original_metadata"] = to_json(prep.original_metadata)
        for key, value in (extra or {}).items():
            set_attr(group, str(key), value, where="group attribute")
        if arr is not None:
            dset = group.create_dataset("data", data=_to_storage(arr, prep),
                                        dtype=prep.h5dtype)
        else:
            chunks = prep.chunks
            h5chunks = tuple(reversed(chunks)) if isinstance(chunks, tuple) else chunks
            dset = group.create_dataset(
                "data", shape=tuple(reversed(data.shape)), dtype=prep.h5dtype,
                chunks=h5chunks
            )
    if arr is not None:
        counter.step()
    else:
        _store(path, prep, dset, counter)  # each block's HDF5 write under hdf5_writes
    with hdf5_writes():
        if prep.numpy_dtype.kind in "UO":
            dset.attrs["numpy_dtype"] = prep.numpy_dtype.str
        _data_quantity(dset, prep.metadata)
        for i, ax in enumerate(prep.axes):
            vec = _dim_vector(ax)
            text = h5py.string_dtype("utf-8") if vec.dtype.kind == "O" else None
            dim = group.create_dataset(f"dim{ndim - i}", data=vec, dtype=text)
            dim.attrs["name"] = ax["name"]
            dim.attrs["units"] = ncem_units(ax["units"])
            # HyperSpy's navigation flag: not in the EMD specification, read by napari-emd
            dim.attrs["navigate"] = np.int8(ax["navigate"])
            for key, value in ax.get("attrs", {}).items():
                set_attr(dim, str(key), value, where="dim attribute")
        write_items(group, prep.items)


def _dim_vector(ax: Mapping[str, Any]) -> np.ndarray:
    """An axis' ``dim`` vector: its labels as text, its coordinates, or the offset-scale
    line (the spec's two-value form ``[offset, offset + scale]`` for fewer than two
    points, so the step survives)."""
    if "labels" in ax:
        return text_array(ax["labels"])
    if "vector" in ax:
        return np.asarray(ax["vector"], dtype=np.float64)
    if ax["size"] >= 2:
        return ax["offset"] + ax["scale"] * np.arange(ax["size"], dtype=np.float64)
    return np.array([ax["offset"], ax["offset"] + ax["scale"]], dtype=np.float64)


def _to_storage(arr: np.ndarray, prep: Prepared) -> np.ndarray:
    if prep.numpy_dtype.kind == "U":
        return arr.astype(object)
    return arr


class _ReversedTarget:
    """A ``dask.array.store`` target writing numpy-order blocks into the reversed
    HDF5 dataset, counting the written blocks."""

    def __init__(self, dset: h5py.Dataset, prep: Prepared) -> None:
        self.dset = dset
        self.prep = prep
        self._written = 0
        self._lock = threading.Lock()
        self.shape = tuple(reversed(dset.shape))
        self.dtype = prep.numpy_dtype
        self.ndim = len(self.shape)

    def __setitem__(self, region: tuple[slice, ...], block: np.ndarray) -> None:
        arr = _to_storage(np.asarray(block), self.prep)
        with hdf5_writes():
            self.dset[tuple(reversed(region))] = arr.T
        with self._lock:
            self._written += 1

    def take_written(self) -> int:
        """Blocks written since the last call."""
        with self._lock:
            n, self._written = self._written, 0
        return n


def _store(path: str, prep: Prepared, dset: h5py.Dataset, counter: Progress) -> None:
    """Write ``prep.source`` block by block.

    dask's threaded scheduler computes the blocks in its worker threads and the target
    writes each one (the target is an open h5py handle that cannot travel to other
    processes; ``H5_LOCK`` serialises our writes with lazy reads of EMD files in this
    process). The scheduler's own loop runs in this thread, and a dask callback reports
    progress from it, so a progress callback (a napari progress bar) is always called
    from the thread that asked for the write.
    """
    import dask.array as da

    target = _ReversedTarget(dset, prep)
    try:
        with _report_progress(target, counter):
            da.store(prep.source, target, lock=H5_LOCK, scheduler="threads")
        counter.step(target.take_written())
    finally:
        target.dset = None  # no dataset handle may outlive the file (see abandon)


@contextlib.contextmanager
def _report_progress(target: _ReversedTarget, counter: Progress) -> Iterator[None]:
    """A dask callback, active for the block, reporting written blocks to ``counter``
    from the scheduler's loop (the calling thread)."""
    from dask.callbacks import Callback

    def posttask(key: Any, result: Any, dsk: Any, state: Any, worker: Any) -> None:
        counter.step(target.take_written())

    with Callback(posttask=posttask):
        yield


def _data_quantity(dset: h5py.Dataset, metadata: Mapping[str, Any]) -> None:
    """The spec's optional ``name``/``units`` of the data values, from HyperSpy's
    ``Signal.quantity`` (``"Intensity (counts)"``)."""
    signal = metadata.get("Signal")
    quantity = signal.get("quantity") if isinstance(signal, Mapping) else None
    if not isinstance(quantity, str) or not quantity.strip():
        return
    q = quantity.strip()
    name, units = q, ""
    if q.endswith(")") and "(" in q:
        name, units = q[: q.rindex("(")].strip(), q[q.rindex("(") + 1 : -1].strip()
    dset.attrs["name"] = name
    dset.attrs["units"] = units


def ncem_units(symbol: str) -> str:
    """The NCEM spelling of a unit: every character separated by ``_`` inside brackets
    (``nm`` -> ``[n_m]``, ``1/nm`` -> ``[1_/_n_m]``), as ncempy and RosettaSciIO write."""
    return "[" + "_".join(symbol) + "]" if symbol else ""

