"""napari dock widgets: the spectrum-image loader and the spectrum viewer."""
