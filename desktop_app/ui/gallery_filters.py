"""The gallery's filter bar: search text, model, date range, favourites, sort."""

from __future__ import annotations

from datetime import datetime, timedelta

from PySide6.QtCore import QDate, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDateEdit,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop_app.gallery.index import GalleryQuery, SortOrder

CUSTOM_RANGE = -1
SHRINKABLE = QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
DATE_RANGES = (("Any time", None), ("Today", 0), ("Last 7 days", 7), ("Last 30 days", 30),
               ("Last 365 days", 365), ("Custom range…", CUSTOM_RANGE))
SORTS = (("Newest first", SortOrder.newest), ("Oldest first", SortOrder.oldest),
         ("By model", SortOrder.model), ("By seed", SortOrder.seed))


def _day_start(day: QDate) -> float:
    return datetime(day.year(), day.month(), day.day()).timestamp()


class GalleryFilterBar(QWidget):
    """Widgets whose state makes a GalleryQuery; the panel listens to their own signals.

    Laid out in short rows so the bar fits a side panel about 300 px wide: search, favourites
    and rescan; model, date and sort (combos shrink and elide); the custom date range.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.search_edit = QLineEdit(placeholderText="Search prompts, models, seeds…")
        self.search_edit.setClearButtonEnabled(True)
        self.model_combo = QComboBox()
        self.date_combo = QComboBox()
        for label, days in DATE_RANGES:
            self.date_combo.addItem(label, days)
        self.date_from_edit = QDateEdit(QDate.currentDate().addDays(-7))
        self.date_to_edit = QDateEdit(QDate.currentDate())
        for edit in (self.date_from_edit, self.date_to_edit):
            edit.setCalendarPopup(True)
            edit.setVisible(False)
        self.favourites_check = QCheckBox("★ only")
        self.sort_combo = QComboBox()
        for label, order in SORTS:
            self.sort_combo.addItem(label, order)
        self.rescan_button = QPushButton("Rescan")
        self.rescan_button.setToolTip("Look for images added or removed outside the app (F5)")
        self.count_label = QLabel()
        self.count_label.setObjectName("galleryCount")
        self.count_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        for combo, tip in ((self.model_combo, "Only images made with this model"),
                           (self.date_combo, "Only images from this period"),
                           (self.sort_combo, "Order of the grid")):
            # Shrink to the panel instead of widening it; the popup still shows full names.
            combo.setSizeAdjustPolicy(SHRINKABLE)
            combo.setMinimumContentsLength(4)
            combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            combo.setToolTip(tip)
        self.search_edit.setMinimumWidth(80)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        for row_widgets, stretch in (
                ((self.search_edit, self.favourites_check, self.rescan_button), 0),
                ((self.model_combo, self.date_combo, self.sort_combo), -1),
                ((self.date_from_edit, self.date_to_edit, self.count_label), 2)):
            row = QHBoxLayout()
            row.setSpacing(6)
            for widget in row_widgets:
                row.addWidget(widget)
            if stretch >= 0:
                row.setStretch(stretch, 1)
            layout.addLayout(row)
        self.set_models([])

    def query(self) -> GalleryQuery:
        """The query the widgets describe (shows the date edits for a custom range)."""
        days = self.date_combo.currentData()
        custom = days == CUSTOM_RANGE
        self.date_from_edit.setVisible(custom)
        self.date_to_edit.setVisible(custom)
        since = until = None
        if custom:
            since = _day_start(self.date_from_edit.date())
            until = _day_start(self.date_to_edit.date()) + 86_400 - 0.001
        elif days is not None:
            start = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0)
            since = (start - timedelta(days=days)).timestamp()
        return GalleryQuery(search=self.search_edit.text().strip(),
                            model=self.model_combo.currentData(), date_from=since,
                            date_to=until, favourites_only=self.favourites_check.isChecked(),
                            sort=self.sort_combo.currentData())

    def set_models(self, names: list[str]) -> None:
        """Refill the model filter, keeping the current choice when it still exists."""
        current = self.model_combo.currentData()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        self.model_combo.addItem("All models", None)
        for name in names:
            self.model_combo.addItem(name, name)
        position = self.model_combo.findData(current) if current is not None else 0
        self.model_combo.setCurrentIndex(max(position, 0))
        self.model_combo.blockSignals(False)
