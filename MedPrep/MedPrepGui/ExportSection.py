"""The Export section: the dataset export of the ticked inputs, its summary and its QC report.

``logic.exportDataset`` (MedPrepLib's export) does the work behind a progress dialog whose
Cancel stops it with the dataset left resumable: the same export again finishes it. This file
passes the parameter node's options and shows what came back: cases written, quarantined with
their reasons, what was left out and why, and a button that opens ``qc/report.html``.
"""

from __future__ import annotations

import logging

import qt
from MedPrepCore import RecipeFields
from slicer.i18n import tr as _

from .DicomBrowser import dicomSource
from .Progress import pathOrNone, runWithProgress

MAX_LISTED = 20
"""Lines of a summary list shown before "... and N more"."""


def _listed(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    more = [_("  ... and {count} more").format(count=len(lines) - MAX_LISTED)] if len(lines) > MAX_LISTED else []
    return [title, *(f"  {line}" for line in lines[:MAX_LISTED]), *more]


def summary(report) -> str:
    """The on-screen summary of an ``ExportReport``."""
    lines = [_("{count} cases written to {folder}.").format(count=len(report.exported), folder=str(report.dataset_folder))]
    quarantined = [f"{case}: {reason}" for case, reason in sorted(report.quarantined.items())]
    lines += _listed(_("{count} quarantined:").format(count=len(quarantined)), quarantined)
    lines += _listed(
        _("{count} left out:").format(count=len(report.excluded)), [f"{what}: {why}" for what, why in report.excluded]
    )
    lines += _listed(_("Warnings:"), [str(w) for w in report.warnings])
    return "\n".join(lines)


class ExportSection:
    """``exportButton``, the summary label and ``openReportButton``."""

    def __init__(self, ui, logic) -> None:
        self.ui = ui
        self.logic = logic
        self._parameterNode = None
        self._reportPath = None
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)
        self.ui.openReportButton.connect("clicked(bool)", self.onOpenReportButton)

    def setParameterNode(self, parameterNode) -> None:
        self._parameterNode = parameterNode
        self.updateFromParameterNode()

    def updateFromParameterNode(self) -> None:
        p = self._parameterNode
        if p is None:
            self.ui.exportButton.enabled = False
            return
        hasInputs = bool(p.dicomSeriesUids) if p.inputSource == "dicom" else bool(p.sceneVolumes)
        hasFolder = pathOrNone(p.outputFolder) is not None
        self.ui.exportButton.enabled = hasInputs and hasFolder
        if not hasInputs:
            self.ui.exportButton.toolTip = _("Tick series in the DICOM tree, or volumes of the scene")
        elif not hasFolder:
            self.ui.exportButton.toolTip = _("Select an output folder")
        else:
            self.ui.exportButton.toolTip = _("Write the dataset (cancel at any time: exporting again resumes it)")

    def onExportButton(self) -> None:
        p = self._parameterNode
        fromDicom = p.inputSource == "dicom"
        report = runWithProgress(
            _("MedPrep: exporting the dataset"),
            lambda progressCallback: self.logic.exportDataset(
                str(p.outputFolder),
                source=dicomSource(p) if fromDicom else None,
                seriesUids=list(p.dicomSeriesUids) if fromDicom else None,
                labelsFrom=p.dicomLabelsFrom if fromDicom and p.dicomLabelsFrom != "none" else None,
                volumePairs=None if fromDicom else list(zip(p.sceneVolumes, p.sceneLabels)),
                fmt=p.exportFormat,
                recipe=RecipeFields.recipeForRun(p.recipeJson),
                labelMap=pathOrNone(p.labelMapPath),
                datasetId=p.datasetId or None,
                datasetName=p.datasetName.strip() or None,
                folds=p.folds,
                testFraction=p.testFraction,
                seed=p.seed,
                keyFile=pathOrNone(p.keyFile),
                overwrite=p.overwrite,
                qc=p.qc,
                progressCallback=progressCallback,
                log=lambda line: logging.info("MedPrep export: %s", line),
            ),
            self.ui.statusLabel,
            _("Export cancelled. Export again with the same settings to finish it: it resumes where it stopped."),
        )
        if report is None:
            return
        self.ui.exportSummaryLabel.text = summary(report)
        self._reportPath = report.report
        self.ui.openReportButton.enabled = bool(report.report)
        self.ui.statusLabel.text = (
            _("Export finished.") if not report.quarantined else _("Export finished; some cases were quarantined.")
        )

    def onOpenReportButton(self) -> None:
        if self._reportPath:
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self._reportPath)))
