"""One case of an export, start to finish: load, check, process, write, and say what was done.

:func:`prepare_case` loads a case's channels and label and brings them onto one grid: every
channel onto the first channel's grid (resampled in physical space, linear, when the grids
differ), the label checked against that grid by the dataset's label rules. The statistics pass
and :func:`run_case` both start from it, so the statistics see exactly what is exported.

:func:`run_case` runs the recipe on every channel (the label follows the first channel), writes
the files where the format puts them, draws the QC montage and returns the case's record: the
files with their SHA-256, the recipe provenance per channel, the facts the report shows, the
warnings. It runs in the export's process or in a worker process; the same job gives the same
bytes in either. A case that cannot be exported raises a :class:`~MedPrepLib.errors.MedPrepError`
whose message (no paths, no patient data) becomes its quarantine reason.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..atomic import make_folder
from ..errors import ExportError
from ..processing.resample import resample
from ..recipe import Recipe, run_recipe
from ..volume import Volume
from .cases import CaseFiles, SourceCase
from .formats import Format
from .label_rules import LabelRules
from .state import file_sha256

QC_FOLDER = "qc"
"""Where the per-case QC montages (``qc/<case>.png``) and the report (``qc/report.html``) go."""


@dataclass(frozen=True)
class CaseJob:
    """Everything a worker needs for one case (picklable)."""

    case_id: str
    source: SourceCase
    files: CaseFiles
    fmt: Format
    recipes: dict[str, dict]
    """Channel name -> recipe JSON (``Recipe.to_dict()``) to run on it."""
    statistics: dict[str, Any] = field(default_factory=dict)
    """Channel name -> dataset statistics for the recipe of that channel (``{}``: none needed)."""
    labels: LabelRules | None = None
    seed: int = 0
    qc: bool = True


def _one_grid(channels: dict[str, Volume]) -> tuple[list[Volume], list[str]]:
    """The channels on the first channel's grid, with one voxel type; warnings say what moved."""
    names = list(channels)
    first = channels[names[0]]
    out = [first]
    warnings = []
    for name in names:
        volume = channels[name]
        if volume.array.ndim != 3:
            raise ExportError(
                f"channel {name} is not a 3D volume (shape {volume.shape})",
                hint="export 3D volumes; choose one time point or echo per channel",
            )
        if name == names[0]:
            continue
        if not volume.geometry.isclose(first.geometry, atol_mm=1e-3, atol_dir=1e-5):
            volume = resample(volume, first.geometry, interpolation="linear", fill_value=float(volume.array.min()))
            warnings.append(f"channel {name} resampled (linear) onto channel {names[0]}'s grid")
        else:
            volume = Volume(volume.array, first.geometry, metadata=volume.metadata)
        out.append(volume)
    dtype = np.result_type(*(v.dtype for v in out))
    out = [v if v.dtype == dtype else v.with_array(v.array.astype(dtype)) for v in out]
    return out, warnings


def prepare_case(source: SourceCase, labels: LabelRules | None) -> tuple[list[Volume], Volume | None, list[str], dict]:
    """The case's channels on one grid, its checked label (or ``None``), warnings, and the
    label facts (values present, voxel counts, volumes in ml; ``{}`` without a label)."""
    loaded = {name: (src if isinstance(src, Volume) else src()) for name, src in source.images.items()}
    channels, warnings = _one_grid(loaded)
    label = None
    facts: dict = {}
    if source.label is not None:
        if isinstance(source.label, Volume):
            raw = source.label
        elif getattr(source.label, "needs_image", False):  # a segmentation object: made on the image's grid
            raw = source.label(channels[0], grid_policy=labels.grid_policy if labels is not None else "reject")
        else:
            raw = source.label()
        if labels is None:
            raise ExportError("the case has a label but the export has no label rules")
        label, facts, label_warnings = labels.prepare(raw, channels[0])
        warnings.extend(label_warnings)
    return channels, label, warnings, facts


def remove_case_files(job: CaseJob) -> None:
    """Remove what a failed case may have written (its files and montage), so that a
    quarantined case leaves nothing in the dataset."""
    for path in (*job.files.files, f"{QC_FOLDER}/{job.case_id}.png"):
        try:
            (job.fmt.folder / path).unlink()
        except FileNotFoundError:
            pass


def _strip_software(provenance: dict) -> dict:
    """A channel's recipe provenance without the software versions (one list in medprep.json)."""
    return {k: v for k, v in provenance.items() if k != "software"}


def _facts(channels: list[Volume], names: list[str]) -> dict:
    g = channels[0].geometry
    return {
        "shape": list(g.size),
        "spacing_mm": [round(float(s), 6) for s in g.spacing],
        "orientation": g.orientation,
        "dtype": str(channels[0].dtype),
        "value_range": {n: [float(v) for v in c.value_range()] for n, c in zip(names, channels, strict=True)},
    }


class _CaseLog(logging.Handler):
    """Holds the library's warnings during one case: they go into the case's record (and the
    report) instead of the console, the same whichever process runs the case."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = " ".join(record.getMessage().split())
        if message not in self.messages:
            self.messages.append(message)


@contextmanager
def library_warnings():
    """Within the block the library's log warnings are collected (the yielded list), not shown."""
    logger = logging.getLogger("MedPrepLib")
    handler = _CaseLog()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def run_case(job: CaseJob) -> dict:
    """Export one case (see the module doc); returns its record. The library's log warnings
    during the case become the record's warnings."""
    with library_warnings() as logged:
        record = _run_case(job)
    record["warnings"] = [*record["warnings"], *(m for m in logged if m not in record["warnings"])]
    return record


def _run_case(job: CaseJob) -> dict:
    source = job.source
    names = list(source.images)
    channels, label, warnings, label_facts = prepare_case(source, job.labels)
    provenance = {}
    out_channels = []
    out_label = label
    for n, (name, volume) in enumerate(zip(names, channels, strict=True)):
        recipe = Recipe.from_dict(job.recipes[name])
        result = run_recipe(
            recipe, volume, label if n == 0 else None, statistics=job.statistics.get(name) or None, seed=job.seed,
            consume_input=True,  # the volumes were loaded for this case alone
        )  # fmt: skip
        if n == 0:
            out_label = result.label
        elif not result.image.geometry.isclose(out_channels[0].geometry, atol_mm=1e-3, atol_dir=1e-5):
            raise ExportError(f"the recipe left channel {name} on a grid different from channel {names[0]}'s")
        out_channels.append(result.image)
        provenance[name] = _strip_software(result.provenance)
    if out_label is not None and out_label.dtype.kind == "f":
        raise ExportError("the recipe made the label non-integer", hint="label maps must stay integer class values")
    if len(out_channels) > 1:
        out_channels, _ = _one_grid(dict(zip(names, out_channels, strict=True)))
    files = job.fmt.write_case(job.files, out_channels, out_label)
    if job.qc:
        from .qc import write_montage

        qc_path = f"{QC_FOLDER}/{job.case_id}.png"
        make_folder(job.fmt.folder / QC_FOLDER)
        write_montage(job.fmt.folder / qc_path, out_channels[0], out_label, modality=source.modality, overwrite=True)
        files[qc_path] = file_sha256(job.fmt.folder / qc_path)
    facts = _facts(out_channels, names)
    from .qc import percentiles
    from .report import INTENSITY_PERCENTILES

    intensity = percentiles(out_channels[0], INTENSITY_PERCENTILES)
    facts["intensity"] = [float(v) for v in intensity] if intensity else None
    if label_facts:
        facts["label"] = label_facts
    return {
        "case": job.case_id,
        "status": "exported",
        "split": job.files.split,
        "files": files,
        "facts": facts,
        "sidecar": dict(source.sidecar),
        "provenance": provenance,
        "warnings": [*source.warnings, *warnings],
    }
