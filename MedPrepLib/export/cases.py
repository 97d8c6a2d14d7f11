"""The value types of an export: a case going in, and where a case's files went.

A :class:`Case` is one study to export: its pseudonymous id, the opaque patient key that keeps
a patient's studies together in the splits, its image channels and optional label (volumes, or
functions that load them when the runner gets to the case), a split hint and the extra columns
used for stratification. Sources (DICOM folder, Slicer database, cohort table) build cases;
privacy gives them ids; splits reads their patient keys; the runner loads, processes and writes.

A :class:`CaseFiles` is where a format puts one case's files (paths relative to the dataset
folder, ``/``-separated) and which part of the dataset the case is in. A format module computes
it before writing (so the runner writes the volumes through :func:`MedPrepLib.imageio.write_image`)
and reads the list of them back to write its index (``dataset.json``, ``manifest.csv``).

The label table (name -> voxel value) and the channel names are one for the whole dataset;
:func:`check_label_table` and :func:`check_channel_names` are the checks every format shares.

>>> import numpy as np
>>> from MedPrepLib.volume import Volume
>>> case = Case("case_0001", patient="p-17", images={"CT": Volume(np.zeros((2, 3, 4), np.int16))})
>>> case.channels, case.labelled, case.image("CT").shape
(('CT',), False, (2, 3, 4))
>>> check_label_table({"tumour": 2, "background": 0, "liver": 1})
{'background': 0, 'liver': 1, 'tumour': 2}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ..errors import ExportError
from ..volume import Volume

VolumeSource = Volume | Callable[[], Volume]
"""A volume, or a function without arguments that loads it (called when the case is processed)."""

SPLITS = ("train", "test")
"""The parts of a dataset: ``train`` (labelled, in the cross-validation folds) and ``test``."""

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
"""Case ids become file names in every format: letters, digits, ``_`` and ``-``, no dots (nnU-Net
and MSD find the case id by cutting the file ending) and no leading ``.``/``_`` (hidden, and
skipped by nnU-Net's MSD converter)."""


def check_case_id(case_id: str) -> str:
    """Return ``case_id`` if it is safe as a file name in every format, else raise ExportError."""
    if not isinstance(case_id, str) or not _SAFE_ID.match(case_id):
        raise ExportError(
            f"case id {case_id!r} cannot be a file name in a dataset",
            hint="use letters, digits, '_' and '-' only, starting with a letter or digit",
        )
    return case_id


@dataclass(frozen=True, eq=False)
class Case:
    """One study to export (immutable; volumes are compared by identity).

    Attributes
    ----------
    case_id:
        The pseudonym that names the case's files (``case_0001``); see :mod:`.privacy`.
    patient:
        An opaque key that is the same for all studies of one patient. It is used only to keep
        those studies in one split and fold, and is never written anywhere (it may be a
        PatientID).
    images:
        Channel name -> volume (or loader), in channel order: ``{"CT": ...}`` or
        ``{"T1": ..., "FLAIR": ...}``. Volumes are (z, y, x) arrays on an LPS grid; all
        channels of a case share one grid once processed.
    label:
        The label volume (or loader) on the image grid, integer voxel values from the label
        table, or ``None`` for an unlabelled case (which goes to the test part).
    split:
        ``"train"`` or ``"test"`` to fix the case's part (a cohort table's ``split`` column), or
        ``None`` to let the split decide.
    columns:
        Extra values of the case (cohort table columns) that ``--stratify`` may name.
    warnings:
        What the source noticed about the case (no patient column, a stack skipped...), shown in
        the report. Must not hold identifying text.
    """

    case_id: str
    patient: str
    images: Mapping[str, VolumeSource]
    label: VolumeSource | None = None
    split: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __post_init__(self):
        check_case_id(self.case_id)
        if not isinstance(self.patient, str) or not self.patient:
            raise ExportError(f"case {self.case_id}: the patient key must be a non-empty string")
        if not self.images:
            raise ExportError(f"case {self.case_id} has no image channel")
        check_channel_names(list(self.images))
        if self.split not in (None, *SPLITS):
            raise ExportError(f"case {self.case_id}: split {self.split!r} is not 'train', 'test' or empty")
        if self.split == "train" and self.label is None:
            raise ExportError(
                f"case {self.case_id} is marked 'train' but has no label",
                hint="give it a label, or mark it 'test' (unlabelled cases go to the test part)",
            )
        object.__setattr__(self, "images", MappingProxyType(dict(self.images)))
        object.__setattr__(self, "columns", MappingProxyType({str(k): str(v) for k, v in self.columns.items()}))
        object.__setattr__(self, "warnings", tuple(self.warnings))

    @property
    def channels(self) -> tuple[str, ...]:
        """The channel names, in order."""
        return tuple(self.images)

    @property
    def labelled(self) -> bool:
        return self.label is not None

    def image(self, channel: str) -> Volume:
        """The volume of one channel, loading it if it is a loader."""
        return _resolve(self.images[channel])

    def load_label(self) -> Volume | None:
        """The label volume (loaded if it is a loader), or ``None``."""
        return None if self.label is None else _resolve(self.label)


def _resolve(source: VolumeSource) -> Volume:
    volume = source if isinstance(source, Volume) else source()
    if not isinstance(volume, Volume):
        raise ExportError(f"a case loader returned {type(volume).__name__}, not a Volume")
    return volume


@dataclass(frozen=True)
class CaseFiles:
    """Where one case's files are in a dataset, and which part it is in.

    Paths are relative to the dataset folder, with ``/`` separators (what ``dataset.json`` and
    ``manifest.csv`` hold).

    Attributes
    ----------
    case_id:
        The case's pseudonym.
    split:
        ``"train"`` or ``"test"``.
    fold:
        The cross-validation fold in which the case is validated (0-based), for ``train`` cases;
        ``None`` for test cases.
    images:
        The image files: one per channel in channel order (nnU-Net, plain NIfTI), or a single
        file holding all channels (a 4D NIfTI for MSD, the ``.npz`` file).
    label:
        The label file, or ``None`` when the case has none or the format keeps the label inside
        the image file (``npz``).
    labelled:
        Whether the case has a label (written to ``label`` or inside the image file).
    """

    case_id: str
    split: str
    fold: int | None
    images: tuple[str, ...]
    label: str | None
    labelled: bool

    def __post_init__(self):
        check_case_id(self.case_id)
        if self.split not in SPLITS:
            raise ExportError(f"case {self.case_id}: split {self.split!r} is not 'train' or 'test'")
        if self.split == "train" and not self.labelled:
            raise ExportError(f"case {self.case_id}: a training case needs a label")
        if self.split == "test" and self.fold is not None:
            raise ExportError(f"case {self.case_id}: a test case has no fold")
        if self.fold is not None and (not isinstance(self.fold, int) or self.fold < 0):
            raise ExportError(f"case {self.case_id}: fold {self.fold!r} is not a fold number (0, 1, ...)")
        object.__setattr__(self, "images", tuple(self.images))

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the case: the images, then the label file if any."""
        return self.images + ((self.label,) if self.label else ())


def check_channel_names(channels: list[str]) -> list[str]:
    """Channel names must be non-empty, distinct strings; returns them as a list."""
    channels = list(channels)
    if not channels:
        raise ExportError("a dataset needs at least one image channel")
    for name in channels:
        if not isinstance(name, str) or not name.strip():
            raise ExportError(f"channel name {name!r} is empty or not a string", hint="name channels like 'CT', 'T1'")
    if len(set(channels)) != len(channels):
        raise ExportError(f"channel names {channels} repeat a name", hint="give every channel its own name")
    return channels


def check_label_table(labels: Mapping[str, int], *, consecutive: bool = False) -> dict[str, int]:
    """Validate the dataset's label table (name -> voxel value) and return it ordered by value.

    Every name is a non-empty string, every value a distinct integer >= 0, and value 0 is
    ``"background"`` (the name nnU-Net requires; the other formats use it too, so the one table
    reads the same everywhere). With ``consecutive`` (nnU-Net) the values must be 0, 1, 2 ...
    """
    table: dict[str, int] = {}
    for name, value in labels.items():
        if not isinstance(name, str) or not name.strip():
            raise ExportError(f"label name {name!r} is empty or not a string")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ExportError(f"label {name!r} has value {value!r}: label values are integers >= 0")
        table[name] = int(value)
    values = sorted(table.values())
    if len(set(values)) != len(values):
        raise ExportError(f"label table {table} gives two names the same value", hint="one name per value")
    if table.get("background") != 0:
        raise ExportError(
            f"label table {table} must name value 0 'background'",
            hint="add \"background\": 0 to the label map (and no other name for 0)",
        )
    if consecutive and values != list(range(len(values))):
        raise ExportError(
            f"label values {values} are not consecutive (0, 1, 2, ...), which nnU-Net requires",
            hint="remap them with a label map (--label-map)",
        )
    return dict(sorted(table.items(), key=lambda item: item[1]))


# --- what a source finds, before the cases have pseudonyms ---------------------------------------


@dataclass(frozen=True, eq=False)
class SourceCase:
    """One study as a source (DICOM folder, Slicer database, cohort table, image folder) finds it,
    before the export gives it a pseudonym.

    The runner sorts the ``key`` of every source case into case ids
    (:func:`~.privacy.assign_case_ids`), then builds a :class:`Case` with :meth:`to_case`.
    Nothing here is written to the dataset except through the allow-listed ``sidecar``.

    Attributes
    ----------
    key:
        A stable, unique sort key of the case: for DICOM ``(patient key, StudyInstanceUID)``,
        for a table row or an image file its input path(s). Never written anywhere.
    patient:
        The opaque patient key shared by all studies of one patient (never written).
    modality:
        The modality of the first channel (``CT``, ``MR``...; "" when unknown); chooses QC
        windowing and nnU-Net's channel name.
    images, label, split, columns, warnings:
        As in :class:`Case`. Loaders must be picklable (module-level functions or
        :func:`functools.partial` of them, never lambdas) so that worker processes can run them.
    key_row:
        ``(patient, study, source)`` for the key file: the source PatientID (or cohort
        ``patient`` value), the StudyInstanceUID ("" when none) and the input path, as typed.
        Written only to the user's ``--key-file``.
    fingerprint:
        A digest of everything the case is made from (file paths, sizes, modification times,
        selection), so a re-run can tell that the inputs of an existing dataset changed.
    sidecar:
        The allow-listed acquisition facts of the case (:func:`~.privacy.sidecar`).
    """

    key: tuple[str, ...]
    patient: str
    images: Mapping[str, VolumeSource]
    modality: str = ""
    label: VolumeSource | None = None
    split: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    key_row: tuple[str, str, str] = ("", "", "")
    fingerprint: str = ""
    sidecar: Mapping[str, object] = field(default_factory=dict)

    def to_case(self, case_id: str) -> Case:
        """The :class:`Case` under its pseudonym ``case_id``."""
        return Case(
            case_id,
            patient=self.patient,
            images=self.images,
            label=self.label,
            split=self.split,
            columns=self.columns,
            warnings=self.warnings,
        )


@dataclass(frozen=True)
class Exclusion:
    """An input left out of the dataset, with its reason (shown in the report, never identifying).

    ``what`` names the input without source paths or patient data: a stack id with modality,
    series number and description ("stack s1a2b3c4d5 (CT, series 2, 'Topogram')"), or a cohort
    table row number ("row 7"). ``reason`` says why ("a localizer: 3 slices; fewer than 10").
    """

    what: str
    reason: str


@dataclass
class SourceCases:
    """What a source yields: the cases, the inputs left out with reasons, and warnings.

    ``label_table`` is the dataset's label table when the source decided it (labels from
    segmentation objects without a label map: every structure name found, see
    :meth:`~MedPrepLib.segmentation.label_table.SegmentLabelTable.from_names`), else ``None``.
    """

    cases: list[SourceCase] = field(default_factory=list)
    excluded: list[Exclusion] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    label_table: object = None
