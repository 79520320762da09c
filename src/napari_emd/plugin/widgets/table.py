"""A read-only table dock: the table datasets of a file (text or numbers), which have no
image to show."""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

# Rows shown at most (a note says how many more there are).
MAX_ROWS = 10_000


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class TableView(QWidget):
    """One table: a 2-D array (1-D arrays become one column), cells as text."""

    def __init__(self, title: str, values: Any, source: str = "") -> None:
        super().__init__()
        arr = np.asarray(values, dtype=object)
        if arr.ndim == 0:
            arr = arr.reshape(1, 1)
        elif arr.ndim == 1:
            arr = arr[:, None]
        elif arr.ndim > 2:
            arr = arr.reshape(arr.shape[0], -1)
        layout = QVBoxLayout(self)
        self.label = QLabel(f"<b>{title}</b> — {arr.shape[0]} × {arr.shape[1]}"
                            + (f"<br>{source}" if source else ""))
        self.label.setWordWrap(True)
        layout.addWidget(self.label)
        self.table = QTableWidget(min(arr.shape[0], MAX_ROWS), arr.shape[1])
        for i in range(min(arr.shape[0], MAX_ROWS)):
            for j in range(arr.shape[1]):
                self.table.setItem(i, j, QTableWidgetItem(_text(arr[i, j])))
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)
        layout.addWidget(self.table, 1)
        if arr.shape[0] > MAX_ROWS:
            layout.addWidget(QLabel(f"… {arr.shape[0] - MAX_ROWS} more rows not shown"))
