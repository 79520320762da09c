"""The Velox EDS quantification settings of the spectrum viewer's SI, shown folded.

A Velox file keeps the settings its user quantified with
(:func:`napari_emd.formats.velox.quantsettings.eds_quant_settings`): the element
selection pre-fills the viewer's elements (through the reader's ``Sample.elements``), and
this box shows the rest (lines, cross-section model, absorption and background
correction) behind a fold-out arrow, with the same text as its tooltip. When the file
stores background windows, a check box (on by default) has "Map element" use them for
the lines they bracket.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QLabel, QToolButton, QVBoxLayout, QWidget

from ...formats.velox.quantsettings import EDSQuantSettings, eds_quant_settings


class VeloxSettingsBox(QWidget):
    """A fold-out text of a record's Velox EDS quantification settings (hidden when the
    file has none)."""

    def __init__(self) -> None:
        super().__init__()
        self.settings: EDSQuantSettings | None = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.toggle = QToolButton()
        self.toggle.setText("Velox quantification settings")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.toggled.connect(self._toggled)
        self.text = QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.text.setVisible(False)
        self.use_windows = QCheckBox("Background windows from the file")
        self.use_windows.setChecked(True)
        self.use_windows.setToolTip("Net-count element maps subtract the background of "
                                    "the windows the file stores for the line (else two "
                                    "windows placed 2 FWHM either side of it)")
        self.use_windows.setVisible(False)
        layout.addWidget(self.toggle)
        layout.addWidget(self.use_windows)
        layout.addWidget(self.text)
        self.setVisible(False)

    def _toggled(self, on: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.text.setVisible(on)

    def show_record(self, record: Any) -> None:
        """Show the settings stored with ``record`` (a Dataset), or hide the box."""
        meta = getattr(record, "original_metadata", None) if record is not None else None
        self.settings = eds_quant_settings(meta)
        text = self.settings.summary() if self.settings is not None else ""
        self.text.setText(text)
        self.toggle.setToolTip(text)
        self.setVisible(self.settings is not None)
        self.use_windows.setVisible(bool(self.settings and self.settings.background_windows))
        # on by default where Velox's own quantification used them
        self.use_windows.setChecked(bool(self.settings is None
                                         or self.settings.manual_background_windows))

    def windows_for(self, line: str) -> tuple[float, float, float, float] | None:
        """The file's background windows of ``line`` (``"Fe_Ka"``) in keV, when it
        stores a pair for it and the check box is on."""
        if self.settings is None or not self.use_windows.isChecked():
            return None
        return self.settings.line_background(line)
