"""The package version: ``napari_emd.__version__``, in a module of its own so that code
inside the package (the writer stamps it into every file) reads it without importing the
package's ``__init__`` (which imports that code: an import circle)."""

from __future__ import annotations

try:
    from ._version import __version__  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    from importlib.metadata import PackageNotFoundError, version

    try:
        __version__ = version("napari-emd-io")
    except PackageNotFoundError:
        __version__ = "0.0.0"

__all__ = ["__version__"]
