"""The napari plugin: thin glue between napari and the library.

:mod:`.reader`, :mod:`.writer` and :mod:`.sample` are the npe2 contributions named in
``napari.yaml``; :mod:`.layers` turns :class:`napari_emd.Dataset` records into layer data
tuples; :mod:`.viewer_setup` is everything reading does to a viewer; :mod:`.layer_meta`
is the one definition of what napari-emd keeps in ``layer.metadata``; :mod:`.widgets`
holds the dock widgets and :mod:`.launch` opens napari for ``napari-emd view`` (the only
Qt code).
"""
