"""Loading numba kernel modules: imported on first use, warmed once per process.

A kernel module imports numba, whose start-up is slow and heavy; keeping it out of the
package import means ``import napari_emd`` stays light, and reads that never need a
kernel (a small spectrum image's first energy plane, a small blob) never wait for numba.
Each kernel module has a ``warm_up()`` that loads (or compiles, the first time ever) its
kernels for the usual argument types; :meth:`KernelModule.warm` calls it once, so the
start-up is paid in one known place instead of inside the first call of a hot loop.

The Velox decoders' kernel modules are :data:`STREAM_KERNELS` (the event-stream
decoder), :data:`INDEX_KERNELS` (its disk-cached energy-plane index) and
:data:`BLOB_KERNELS` (the SpectrumImage blob).
"""

from __future__ import annotations

import importlib
import threading
from types import ModuleType


class KernelModule:
    """One module of numba kernels, named by its dotted path, loaded only when asked."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._warm = False
        self._lock = threading.Lock()

    def module(self) -> ModuleType:
        """The kernel module, imported now if it was not yet (not necessarily warmed: a
        kernel called before :meth:`warm` loads itself on that first call)."""
        return importlib.import_module(self.name)

    def warm(self) -> ModuleType:
        """The kernel module with its kernels loaded (its ``warm_up()`` runs once per
        process; threads asking meanwhile wait for that one run)."""
        mod = self.module()
        if not self._warm:
            with self._lock:
                if not self._warm:
                    mod.warm_up()
                    self._warm = True
        return mod

    def is_warm(self) -> bool:
        """Whether :meth:`warm` has run in this process: callers that have a numpy way
        too take the kernel only then (a one-pass kernel beats numpy's temporaries, but
        not numba's start-up)."""
        return self._warm


#: The EDS event-stream decoder's kernels (:mod:`napari_emd.formats.velox.stream.kernels`).
STREAM_KERNELS = KernelModule("napari_emd.formats.velox.stream.kernels")
#: The SpectrumImage blob's kernels (:mod:`napari_emd.formats.velox.blob.kernels`).
BLOB_KERNELS = KernelModule("napari_emd.formats.velox.blob.kernels")
#: The disk-cached energy-plane index's kernels
#: (:mod:`napari_emd.formats.velox.stream.index_kernels`).
INDEX_KERNELS = KernelModule("napari_emd.formats.velox.stream.index_kernels")
