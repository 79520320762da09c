"""Loading the numba kernels: once per process, only when a read needs them.

Importing :mod:`.kernels` imports numba; keeping that out of the package import means
``import napari_emd`` stays light, and a small spectrum image's first energy plane (numpy
only) never waits for numba's start-up.
"""

from __future__ import annotations

from types import ModuleType

_WARM = False


def kernels() -> ModuleType:
    """The numba kernels module (imported on first use)."""
    from . import kernels as k

    return k


def warm_kernels() -> None:
    """Load the numba kernels now (numba's start-up, a few hundred ms, once per process).
    The eager decoder and the lazy chunks need them; the energy-plane index only for big
    streams."""
    global _WARM
    if not _WARM:
        kernels().warm_up()
        _WARM = True


def kernels_warm() -> bool:
    """Whether the kernels are loaded (then a one-pass kernel beats numpy's temporaries)."""
    return _WARM
