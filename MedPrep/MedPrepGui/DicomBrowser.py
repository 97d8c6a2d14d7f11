"""The DICOM part of Inputs: patients / studies / series of the database, ticked for export.

The rows are the logic's (``logic.dicomDatabaseTree``: modality, description, slice count and
MedPrep's verdict, loadable or skipped with its reason); this file shows them in
``dicomTreeWidget`` and keeps the ticked SeriesInstanceUIDs in the parameter node's
``dicomSeriesUids``. *Load selected series* loads one stack into the scene for the preview.
"""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _

from .Progress import pathOrNone, runWithProgress

UID_ROLE = qt.Qt.UserRole
STACK_ROLE = qt.Qt.UserRole + 1
NAME, MODALITY, DESCRIPTION, SLICES, VERDICT = range(5)


def dicomSource(parameterNode) -> str:
    """The DICOM folder of the parameter node, else the application's DICOM database folder."""
    from MedPrepLib.errors import InputError

    folder = pathOrNone(parameterNode.dicomSourcePath)
    if folder:
        return folder
    database = getattr(slicer, "dicomDatabase", None)
    if database is None or not database.isOpen or not database.databaseDirectory:
        raise InputError(
            "Slicer has no DICOM database open",
            hint="import data in the DICOM module first, or choose a DICOM folder",
        )
    return database.databaseDirectory


def _seriesItems(tree):
    """Every series row (the items under patient -> study) of the tree."""
    for p in range(tree.topLevelItemCount):
        patient = tree.topLevelItem(p)
        for s in range(patient.childCount()):
            study = patient.child(s)
            for r in range(study.childCount()):
                yield study.child(r)


def _studyText(study) -> str:
    date = study.date
    if len(date) == 8 and date.isdigit():
        date = f"{date[:4]}-{date[4:6]}-{date[6:]}"
    return " ".join(t for t in (date, study.description) if t) or study.studyInstanceUid


class DicomBrowser:
    """``dicomTreeWidget`` with its Scan and Load buttons."""

    def __init__(self, ui, logic) -> None:
        self.ui = ui
        self.logic = logic
        self._parameterNode = None
        self._filling = False
        self.ui.scanDicomButton.connect("clicked(bool)", self.onScanButton)
        self.ui.loadSeriesButton.connect("clicked(bool)", self.onLoadSeriesButton)
        self.ui.dicomTreeWidget.connect("itemChanged(QTreeWidgetItem*,int)", self.onItemChanged)
        self.ui.dicomTreeWidget.connect("currentItemChanged(QTreeWidgetItem*,QTreeWidgetItem*)", self._updateButtons)

    def setParameterNode(self, parameterNode) -> None:
        self._parameterNode = parameterNode
        self.updateFromParameterNode()

    def updateFromParameterNode(self) -> None:
        """Tick the rows of the parameter node's series (a loaded scene's, for one)."""
        if self._parameterNode is None:
            return
        ticked = set(self._parameterNode.dicomSeriesUids)
        self._filling = True
        try:
            for item in _seriesItems(self.ui.dicomTreeWidget):
                if item.flags() & qt.Qt.ItemIsUserCheckable:
                    state = qt.Qt.Checked if item.data(NAME, UID_ROLE) in ticked else qt.Qt.Unchecked
                    if item.checkState(NAME) != state:
                        item.setCheckState(NAME, state)
        finally:
            self._filling = False
        self._updateButtons()

    def _updateButtons(self, *unused) -> None:
        item = self.ui.dicomTreeWidget.currentItem()
        self.ui.loadSeriesButton.enabled = bool(item is not None and item.data(NAME, STACK_ROLE))

    # -- the tree ------------------------------------------------------------------------------------

    def onScanButton(self) -> None:
        rows = runWithProgress(
            _("MedPrep: reading DICOM"),
            lambda progressCallback: self.logic.dicomDatabaseTree(
                dicomSource(self._parameterNode), progressCallback=progressCallback
            ),
            self.ui.statusLabel,
        )
        if rows is not None:
            self._fill(rows)

    def _fill(self, patients) -> None:
        tree = self.ui.dicomTreeWidget
        ticked = set(self._parameterNode.dicomSeriesUids)
        tristate = qt.Qt.ItemIsUserCheckable | qt.Qt.ItemIsAutoTristate
        loadable = skipped = 0
        self._filling = True
        try:
            tree.clear()
            for patient in patients:
                patientItem = qt.QTreeWidgetItem(tree, [patient.name or patient.patientId or "?", "", "", "", ""])
                patientItem.setFlags(patientItem.flags() | tristate)
                patientItem.setCheckState(NAME, qt.Qt.Unchecked)  # before its children: nothing to pass on
                for study in patient.studies:
                    studyItem = qt.QTreeWidgetItem(patientItem, [_studyText(study), "", study.description, "", ""])
                    studyItem.setFlags(studyItem.flags() | tristate)
                    studyItem.setCheckState(NAME, qt.Qt.Unchecked)
                    for series in study.series:
                        self._seriesItem(studyItem, series, ticked)
                        loadable, skipped = loadable + series.loadable, skipped + (not series.loadable)
                patientItem.setExpanded(True)
            for column in range(tree.columnCount):
                tree.resizeColumnToContents(column)
        finally:
            self._filling = False
        self.ui.dicomSummaryLabel.text = _("{patients} patients: {loadable} loadable series, {skipped} skipped.").format(
            patients=len(patients), loadable=loadable, skipped=skipped
        )
        self._writeTicks()

    def _seriesItem(self, parent, series, ticked: set) -> None:
        verdict = _("loadable") if series.loadable else _("skipped: {reason}").format(reason=series.reason)
        texts = [series.description or series.modality, series.modality, series.description, str(series.slices), verdict]
        item = qt.QTreeWidgetItem(parent, texts)
        item.setData(NAME, UID_ROLE, series.seriesInstanceUid)
        item.setData(NAME, STACK_ROLE, series.stackId or "")
        item.setToolTip(VERDICT, verdict)
        if series.loadable:
            item.setFlags(item.flags() | qt.Qt.ItemIsUserCheckable)
            item.setCheckState(NAME, qt.Qt.Checked if series.seriesInstanceUid in ticked else qt.Qt.Unchecked)
        else:
            item.setForeground(VERDICT, qt.QBrush(qt.QColor("gray")))

    def onItemChanged(self, item, column) -> None:
        if not self._filling and column == NAME:
            self._writeTicks()

    def _writeTicks(self) -> None:
        """The ticked rows' SeriesInstanceUIDs into the parameter node (a series is ticked as a whole)."""
        uids = sorted(
            {
                item.data(NAME, UID_ROLE)
                for item in _seriesItems(self.ui.dicomTreeWidget)
                if item.flags() & qt.Qt.ItemIsUserCheckable and item.checkState(NAME) == qt.Qt.Checked
            }
        )
        if list(self._parameterNode.dicomSeriesUids) != uids:
            self._parameterNode.dicomSeriesUids = uids

    # -- loading one series --------------------------------------------------------------------------

    def onLoadSeriesButton(self) -> None:
        item = self.ui.dicomTreeWidget.currentItem()
        stackId = item.data(NAME, STACK_ROLE) if item is not None else ""
        if not stackId:
            return
        node = runWithProgress(
            _("MedPrep: loading the series"),
            lambda progressCallback: self.logic.loadDicom(
                dicomSource(self._parameterNode), stackId=stackId, progressCallback=progressCallback
            ),
            self.ui.statusLabel,
        )
        if node is not None:
            self._parameterNode.inputVolume = node
            slicer.util.setSliceViewerLayers(background=node, fit=True)
            self.ui.statusLabel.text = _("Loaded '{name}'.").format(name=node.GetName())
