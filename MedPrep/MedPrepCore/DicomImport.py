"""DICOM into the scene through MedPrepLib: a folder or a Slicer DICOM database, no Qt.

:func:`findStacks` lists the image stacks of a DICOM folder or of a Slicer DICOM database
folder (``ctkDICOM.sql``, read without the application); :func:`loadStackNode` loads one of them
with MedPrep's geometry and Hounsfield-unit rules (exact slice placement, tilt and gap policy,
per-slice rescale) into a new volume node. The node is named after the series description and
the stack id — never after the patient — and carries the load's provenance (JSON, no patient
identity) in the attribute :data:`PROVENANCE_ATTRIBUTE`.
"""

from __future__ import annotations

import json
import os

from MedPrepLib.progress import ProgressCallback, as_progress

from . import VolumeNodes
from .Processing import PROVENANCE_ATTRIBUTE


def findStacks(source: str | os.PathLike, progressCallback: ProgressCallback | None = None):
    """``MedPrepLib.dicom.scan.ScanResult`` of a DICOM folder or a Slicer DICOM database (the
    header index speeds up re-scans, as ``medprep scan`` does; ``MEDPREP_CACHE=off`` disables it)."""
    from MedPrepLib.sources import find_stacks

    return find_stacks(source, cache=True, progress=progressCallback)


def stackNodeName(stack) -> str:
    """A node name from the series description and the stack id (no patient information)."""
    description = " ".join((stack.series_description or stack.modality or "DICOM").split())
    return f"{description} [{stack.id}]"


def loadStackNode(
    scene,
    source: str | os.PathLike,
    stackId: str | None = None,
    *,
    geometryPolicy: str = "resample",
    progressCallback: ProgressCallback | None = None,
):
    """Load the stack ``stackId`` (or the only stack) of ``source`` into a new volume node of ``scene``.

    ``geometryPolicy``: "resample" puts tilted or gapped stacks on a regular grid (a warning is in
    the provenance), "reject" raises :class:`~MedPrepLib.errors.GeometryError`. Several stacks and
    no ``stackId`` raise :class:`~MedPrepLib.errors.SeriesSelectionError` listing the ids. A 4D
    stack becomes a vector volume node (one component per time point).
    """
    from MedPrepLib.dicom.load import load_stack
    from MedPrepLib.sources import choose_stack

    progress = as_progress(progressCallback)
    found = findStacks(source, progress.sub(0.0, 0.3))
    stack = choose_stack(found.stacks, found.skipped, stackId, os.fspath(source))
    volume = load_stack(stack, geometry_policy=geometryPolicy, progress=progress.sub(0.3, 0.95), where=os.fspath(source))
    node = VolumeNodes.nodeFromVolume(scene, volume, stackNodeName(stack))
    provenance = {"source": "dicom", "stack_id": stack.id, "modality": stack.modality, **volume.metadata.get("provenance", {})}
    provenance["warnings"] = list(volume.metadata.get("warnings", []))
    node.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(provenance))
    progress.update("loaded", 1.0)
    return node
