"""The scene part of Inputs: the scene's volumes, ticked for export, each with its label.

``sceneVolumesTable`` lists the scalar volumes of the scene (not label maps, not preview nodes);
a ticked row is exported with the label chosen beside it — a label map or a segmentation node,
or none. The ticked volumes and their labels are the parameter node's ``sceneVolumes`` and
``sceneLabels`` (same index), so they are saved with the scene.
"""

from __future__ import annotations

import qt
import slicer
from slicer.i18n import tr as _

VOLUME, LABEL = range(2)
LABEL_NODE_TYPES = ["vtkMRMLLabelMapVolumeNode", "vtkMRMLSegmentationNode"]


def sceneVolumes(scene) -> list:
    """The scene's volumes a dataset can be made of: scalar volumes, not label maps or previews."""
    from MedPrepCore.Preview import PREVIEW_OF_ATTRIBUTE

    return [
        node
        for node in scene.GetNodesByClass("vtkMRMLScalarVolumeNode")
        if not node.IsA("vtkMRMLLabelMapVolumeNode") and not node.GetAttribute(PREVIEW_OF_ATTRIBUTE)
    ]


class ScenePairs:
    """``sceneVolumesTable`` and its Refresh button."""

    def __init__(self, ui) -> None:
        self.ui = ui
        self._parameterNode = None
        self._filling = False
        self._shown = None  # the (volumes, labels) the table shows or last wrote
        table = self.ui.sceneVolumesTable
        table.horizontalHeader().setSectionResizeMode(VOLUME, qt.QHeaderView.Stretch)
        table.horizontalHeader().setSectionResizeMode(LABEL, qt.QHeaderView.Stretch)
        table.verticalHeader().visible = False
        table.connect("itemChanged(QTableWidgetItem*)", self.onTableChanged)
        self.ui.refreshSceneButton.connect("clicked(bool)", self.onRefreshButton)

    def setParameterNode(self, parameterNode) -> None:
        self._parameterNode = parameterNode
        self.onRefreshButton()

    def updateFromParameterNode(self) -> None:
        """Show the parameter node's pairs when they are not the table's (a loaded scene's)."""
        if self._parameterNode is not None and self._pairs() != self._shown:
            self.onRefreshButton()

    def _pairs(self):
        p = self._parameterNode
        return [v.GetID() if v else None for v in p.sceneVolumes], [n.GetID() if n else None for n in p.sceneLabels]

    def onRefreshButton(self) -> None:
        if self._parameterNode is None:
            return
        p = self._parameterNode
        labels = {v.GetID(): n for v, n in zip(p.sceneVolumes, p.sceneLabels) if v is not None}
        table = self.ui.sceneVolumesTable
        self._filling = True
        try:
            volumes = sceneVolumes(slicer.mrmlScene)
            table.setRowCount(len(volumes))
            for row, volume in enumerate(volumes):
                item = qt.QTableWidgetItem(volume.GetName())
                item.setFlags(qt.Qt.ItemIsEnabled | qt.Qt.ItemIsSelectable | qt.Qt.ItemIsUserCheckable)
                item.setCheckState(qt.Qt.Checked if volume.GetID() in labels else qt.Qt.Unchecked)
                item.setData(qt.Qt.UserRole, volume.GetID())
                table.setItem(row, VOLUME, item)
                table.setCellWidget(row, LABEL, self._labelSelector(labels.get(volume.GetID())))
        finally:
            self._filling = False
        self._shown = self._pairs()
        self.onTableChanged()

    def _labelSelector(self, label):
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = LABEL_NODE_TYPES
        selector.noneEnabled = True
        selector.addEnabled = False
        selector.removeEnabled = False
        selector.toolTip = _("The volume's label: a label map or a segmentation (none: unlabelled).")
        selector.setMRMLScene(slicer.mrmlScene)
        selector.setCurrentNode(label)
        selector.connect("currentNodeChanged(vtkMRMLNode*)", self.onTableChanged)
        return selector

    def onTableChanged(self, *unused) -> None:
        """The ticked rows (volume, label) into the parameter node."""
        if self._filling or self._parameterNode is None:
            return
        table, volumes, labels = self.ui.sceneVolumesTable, [], []
        for row in range(table.rowCount):
            item = table.item(row, VOLUME)
            if item is not None and item.checkState() == qt.Qt.Checked:
                volumes.append(slicer.mrmlScene.GetNodeByID(item.data(qt.Qt.UserRole)))
                labels.append(table.cellWidget(row, LABEL).currentNode())
        with slicer.util.NodeModify(self._parameterNode):
            self._parameterNode.sceneVolumes = volumes
            self._parameterNode.sceneLabels = labels
        self._shown = self._pairs()
