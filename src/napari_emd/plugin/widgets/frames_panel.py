"""The loader's per-frame view: X-rays per frame (the dose), the mean of the image
acquired with the spectrum image, and the estimated drift, frame by frame, with the
frames left out greyed. It is what justifies leaving frames out and aligning them."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget


class FramesPanel(QWidget):
    """Three small plots over the frame number (1…N, as Velox numbers frames)."""

    def __init__(self) -> None:
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.figure = Figure(figsize=(4, 3.2), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(240)
        self.axes = self.figure.subplots(3, 1, sharex=True)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        layout.addWidget(self.canvas)
        layout.addWidget(self.note)
        self.report: Any = None
        self.excluded: set[int] = set()
        bg, fg = "#262930", "#d0d0d0"
        self.figure.set_facecolor(bg)
        for ax in self.axes:
            ax.set_facecolor(bg)
            ax.tick_params(colors=fg, labelsize=7)
            for spine in ax.spines.values():
                spine.set_color(fg)
            ax.yaxis.label.set_color(fg)
            ax.xaxis.label.set_color(fg)
        self.setVisible(False)

    def show_report(self, report: Any, excluded: set[int] | None = None) -> None:
        """Plot a :class:`~napari_emd.formats.velox.frames_report.FrameReport`
        (``excluded``: 0-based frames left out, drawn grey)."""
        self.report = report
        self.excluded = set(excluded or ())
        self._draw()
        self.setVisible(report is not None and report.n_frames > 1)

    def set_excluded(self, excluded: set[int]) -> None:
        self.excluded = set(excluded)
        self._draw()

    def _draw(self) -> None:
        r = self.report
        for ax in self.axes:
            ax.clear()
        if r is None:
            self.canvas.draw_idle()
            return
        x = np.arange(1, r.n_frames + 1)
        keep = np.array([i not in self.excluded for i in range(r.n_frames)])
        colors = np.where(keep, "#ffb000", "#606060")
        dose, image, drift = self.axes
        if r.counts is not None:
            dose.bar(x, r.counts, color=colors)
        dose.set_ylabel("X-rays", fontsize=7)
        for title, mean in r.image_means.items():
            image.plot(x, mean, marker="o", ms=3, lw=1, label=title)
            image.scatter(x[~keep], mean[~keep], color="#606060", zorder=3, s=12)
        image.set_ylabel("image mean", fontsize=7)
        if r.shifts is not None:
            drift.plot(x, r.shifts[:, 0], marker="o", ms=3, lw=1, color="#3aa0ff", label="dy")
            drift.plot(x, r.shifts[:, 1], marker="s", ms=3, lw=1, color="#ff5a5a", label="dx")
            drift.legend(fontsize=6, loc="best", frameon=False, labelcolor="#d0d0d0")
        drift.set_ylabel("drift (px)", fontsize=7)
        drift.set_xlabel("frame", fontsize=7)
        drift.set_xticks(x if r.n_frames <= 20 else x[:: max(1, r.n_frames // 10)])
        self.note.setText("; ".join(r.notes))
        self.canvas.draw_idle()
