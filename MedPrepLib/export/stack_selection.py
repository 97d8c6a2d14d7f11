"""Which stacks of a DICOM study form a case: the selection rule, header-only, with a reason for
every stack it leaves out.

A case is one study; it takes one stack per channel. A stack is a *candidate* for a channel when,
checked in this order (the first rule it fails is its reason):

0. its SeriesInstanceUID is one of ``series_uids``, when the selection names series (the
   series a user ticked in Slicer's DICOM browser; the other rules still apply to them);
1. its Modality is the selection's modality (given, or else the modality the most studies of
   the source hold a stack of — counting only the chosen series when there are; see
   :func:`resolve_modality`);
2. it is 3D (a 4D stack, several time points, is not one channel);
3. it has at least ``min_slices`` slices (fewer is a localizer or a partial series);
4. its slice thickness (SliceThickness, else the step between slices, in mm) is within
   ``[min_thickness_mm, max_thickness_mm]`` when a limit is given (unknown thickness fails);
5. its SeriesDescription matches the channel's pattern (a regular expression, case-insensitive,
   found anywhere: ``re.search``), when there is one.

Each channel, in channel order, takes its candidate with the **most slices**; ties go to the
thinner slices, then the lower SeriesNumber, then the lower stack id, so the same folder always
gives the same choice. A stack taken by one channel is not a candidate for a later one. A study
in which a channel has no candidate is not a case.

Without ``channels`` there is one channel, named after the modality (``"CT"``, which nnU-Net
reads as "use CT normalisation"), whose pattern is ``StackSelection.description``. With
``channels`` (``{"T1": "t1_mprage", "FLAIR": "flair"}``) each value is that channel's pattern and
``description`` must be left empty.

Reasons name stack ids and numbers only, never descriptions or UIDs (the caller names stacks);
:meth:`StackSelection.describe` counts the chosen series and never lists them.

Chosen series are series, not cases: a study still gives one case of one stack per channel, so
of two chosen series of one study (one channel) the one with more slices is taken and the other
is left out with that reason.

>>> StackSelection(modality="ct", max_thickness_mm=3).describe()
'CT, at least 10 slices, slice thickness at most 3 mm'
>>> StackSelection(modality="CT", series_uids=("1.2.3.4", "1.2.3.5")).describe()
'CT, at least 10 slices, chosen series only (2)'
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from ..dicom.scan import stack_summary
from ..dicom.stack import Stack
from ..errors import ExportError
from .cases import check_channel_names

DEFAULT_MIN_SLICES = 10
"""Fewer slices than this is a localizer, a scout or a few reformatted slices, not a volume."""


@dataclass(frozen=True)
class StackSelection:
    """The rule that picks a study's stacks (see the module docstring for the order of checks).

    Attributes
    ----------
    modality:
        The DICOM Modality every channel must have (``"CT"``, ``"MR"``; compared in upper
        case), or ``None``: the modality that the most studies hold a candidate stack of (ties:
        alphabetical), reported as a warning.
    description:
        A regular expression that the SeriesDescription of the one channel must contain
        (case-insensitive ``re.search``), or ``None`` for any. Not with ``channels``.
    min_slices:
        The fewest slices (per volume) a stack may have.
    min_thickness_mm, max_thickness_mm:
        Inclusive limits on the slice thickness in mm (SliceThickness, else the slice step),
        or ``None`` for no limit.
    series_uids:
        The SeriesInstanceUIDs of the only series whose stacks may be taken, or ``()`` for any
        (kept sorted, without repeats). UIDs identify a patient's study: they enter the
        fingerprint (hashed), never a reason, a description or ``medprep.json``.
    """

    modality: str | None = None
    description: str | None = None
    min_slices: int = DEFAULT_MIN_SLICES
    min_thickness_mm: float | None = None
    max_thickness_mm: float | None = None
    series_uids: tuple[str, ...] = ()

    def __post_init__(self):
        if self.modality is not None:
            if not isinstance(self.modality, str) or not self.modality.strip():
                raise ExportError(f"modality {self.modality!r} is not a DICOM modality", hint="e.g. 'CT' or 'MR'")
            object.__setattr__(self, "modality", self.modality.strip().upper())
        if self.description is not None:
            compile_pattern(self.description, "the series description")
        if isinstance(self.min_slices, bool) or not isinstance(self.min_slices, int) or self.min_slices < 1:
            raise ExportError(f"min_slices {self.min_slices!r} is not a whole number >= 1")
        for name in ("min_thickness_mm", "max_thickness_mm"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0):
                raise ExportError(f"{name} {value!r} is not a thickness in mm > 0")
        low, high = self.min_thickness_mm, self.max_thickness_mm
        if low is not None and high is not None and low > high:
            raise ExportError(f"slice thickness range {low}-{high} mm is empty", hint="give the minimum first")
        uids = self.series_uids
        if isinstance(uids, str) or not all(isinstance(u, str) and u.strip() for u in uids):
            raise ExportError(  # no UID in the message: it goes to the console
                "the chosen series are not a list of SeriesInstanceUIDs (non-empty texts)",
                hint="give one SeriesInstanceUID per --series-uid",
            )
        object.__setattr__(self, "series_uids", tuple(sorted({u.strip() for u in uids})))

    def to_dict(self) -> dict:
        """The selection as JSON-ready values, for the fingerprint only (hashed: it holds the
        chosen SeriesInstanceUIDs)."""
        return asdict(self)

    def takes_series(self, stack: Stack) -> bool:
        """Rule 0: whether the stack's series is among the chosen ones (any, when none are)."""
        return not self.series_uids or stack.series_instance_uid in self.series_uids

    def describe(self, modality: str | None = None) -> str:
        """The rule in words: ``"CT, at least 10 slices, slice thickness 0.5-3 mm"``."""
        parts = [modality or self.modality or "the most common modality", f"at least {self.min_slices} slices"]
        low, high = self.min_thickness_mm, self.max_thickness_mm
        if low is not None and high is not None:
            parts.append(f"slice thickness {low:g}-{high:g} mm")
        elif low is not None:
            parts.append(f"slice thickness at least {low:g} mm")
        elif high is not None:
            parts.append(f"slice thickness at most {high:g} mm")
        if self.series_uids:
            parts.append(f"chosen series only ({len(self.series_uids)})")
        return ", ".join(parts)


def compile_pattern(pattern: str, what: str) -> re.Pattern:
    """``pattern`` as a case-insensitive regular expression; ExportError naming ``what`` if invalid."""
    if not isinstance(pattern, str) or not pattern:
        raise ExportError(f"the pattern for {what} is empty", hint="give a regular expression, e.g. 't1_mprage'")
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise ExportError(f"the pattern {pattern!r} for {what} is not a regular expression: {exc}") from None


@dataclass(frozen=True)
class Channel:
    """One image channel of a case: its name and the SeriesDescription pattern it takes."""

    name: str
    pattern: str | None

    def matches(self, description: str) -> bool:
        return (
            self.pattern is None
            or compile_pattern(self.pattern, f"channel {self.name}").search(description) is not None
        )


def channels_of(selection: StackSelection, channels: Mapping[str, str] | None, modality: str) -> tuple[Channel, ...]:
    """The channels a case is made of: ``channels`` in order, or one named ``modality`` whose
    pattern is ``selection.description``. Patterns are checked here (ExportError)."""
    if channels is None:
        return (Channel(modality, selection.description),)
    if selection.description is not None:
        raise ExportError(
            "a series description pattern and channels were both given",
            hint="put the description into each channel's pattern (--channels 'T1=t1_mprage,FLAIR=flair')",
        )
    check_channel_names(list(channels))
    for name, pattern in channels.items():
        compile_pattern(pattern, f"channel {name}")
    return tuple(Channel(name, pattern) for name, pattern in channels.items())


@dataclass(frozen=True)
class StackFacts:
    """What the rule reads of a stack: slices per volume and slice thickness (mm, or None)."""

    stack: Stack
    slices: int
    thickness_mm: float | None

    @classmethod
    def of(cls, stack: Stack) -> StackFacts:
        summary = stack_summary(stack)
        thicknesses = [f.slice_thickness for h in stack.headers for f in h.frames if f.slice_thickness]
        thicknesses = thicknesses or [h.slice_thickness for h in stack.headers if h.slice_thickness]
        thickness = statistics.median(thicknesses) if thicknesses else summary["spacing"][2]
        return cls(stack, int(summary["shape"][2]), float(thickness) if thickness else None)

    def rank(self) -> tuple:
        """Sort key, best first: most slices, thinner slices, lower series number, stack id."""
        s = self.stack
        number = s.series_number if s.series_number is not None else math.inf
        return (-self.slices, self.thickness_mm if self.thickness_mm is not None else math.inf, number, s.id)


def _failed_rule(facts: StackFacts, selection: StackSelection, modality: str) -> str | None:
    """Why a stack is no candidate for any channel (rules 0-4), or None."""
    s = facts.stack
    if not selection.takes_series(s):
        return "not among the chosen series"
    if (s.modality or "").upper() != modality:
        return f"modality {s.modality or 'unknown'}; the selection takes {modality}"
    if s.n_timepoints > 1:
        return f"a 4D stack ({s.n_timepoints} time points); a channel is one 3D volume"
    if facts.slices < selection.min_slices:
        return f"too few slices: {facts.slices}, fewer than {selection.min_slices} (a localizer or a partial series)"
    low, high = selection.min_thickness_mm, selection.max_thickness_mm
    if low is None and high is None:
        return None
    if facts.thickness_mm is None:
        return "slice thickness unknown, and the selection limits it"
    if low is not None and facts.thickness_mm < low:
        return f"slice thickness {facts.thickness_mm:g} mm, below the minimum {low:g} mm"
    if high is not None and facts.thickness_mm > high:
        return f"slice thickness {facts.thickness_mm:g} mm, above the maximum {high:g} mm"
    return None


def _pattern_text(channels: Sequence[Channel]) -> str:
    return ", ".join(f"{c.name} {c.pattern!r}" for c in channels if c.pattern is not None)


@dataclass
class StudySelection:
    """The outcome for one study: the stack of each channel, the channels without a stack,
    and for every stack not taken (by stack id) why."""

    chosen: dict[str, StackFacts] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def is_case(self) -> bool:
        return not self.missing


def select_study(
    stacks: Sequence[StackFacts], selection: StackSelection, channels: Sequence[Channel], modality: str
) -> StudySelection:
    """Apply the rule to the stacks of one study (see the module docstring)."""
    out = StudySelection()
    candidates: list[StackFacts] = []
    for facts in sorted(stacks, key=StackFacts.rank):
        reason = _failed_rule(facts, selection, modality)
        if reason is None and not any(c.matches(facts.stack.series_description) for c in channels):
            reason = f"series description does not match {_pattern_text(channels)}"
        if reason is None:
            candidates.append(facts)
        else:
            out.reasons[facts.stack.id] = reason
    taken: set[str] = set()
    for channel in channels:
        best = next(
            (f for f in candidates if f.stack.id not in taken and channel.matches(f.stack.series_description)), None
        )
        if best is None:
            out.missing.append(channel.name)
            continue
        out.chosen[channel.name] = best
        taken.add(best.stack.id)
    for facts in candidates:
        if facts.stack.id in taken:
            continue
        name, best = next(
            (c.name, out.chosen[c.name])
            for c in channels
            if c.name in out.chosen and c.matches(facts.stack.series_description)
        )
        if best.slices > facts.slices:
            out.reasons[facts.stack.id] = (
                f"another stack of the study has more slices: {best.stack.id} ({best.slices} against {facts.slices}) is taken for {name}"
            )
        else:
            out.reasons[facts.stack.id] = (
                f"{best.stack.id} has as many slices ({best.slices}) and is taken for {name} "
                "(ties go to thinner slices, then the lower series number)"
            )
    if out.missing:
        lacking = ", ".join(out.missing)
        for name, facts in out.chosen.items():
            out.reasons[facts.stack.id] = f"would be {name}, but its study has no stack for {lacking}"
        out.chosen = {}
    return out


def resolve_modality(studies: Sequence[Sequence[StackFacts]], selection: StackSelection) -> tuple[str, str | None]:
    """The modality to select and, when it was not given, a warning saying which was taken.

    Without ``selection.modality``: the modality of which the most studies hold a 3D stack of
    at least ``min_slices`` slices (of the chosen series, when the selection names some; ties:
    alphabetical order); ``""`` when there is none.
    """
    if selection.modality is not None:
        return selection.modality, None
    counts: Counter[str] = Counter()
    for stacks in studies:
        counts.update(
            {
                (f.stack.modality or "").upper()
                for f in stacks
                if f.stack.modality
                and f.stack.n_timepoints == 1
                and f.slices >= selection.min_slices
                and selection.takes_series(f.stack)
            }
        )
    if not counts:
        return "", None
    modality = min(counts, key=lambda m: (-counts[m], m))
    others = ", ".join(f"{m} ({counts[m]})" for m in sorted(counts) if m != modality)
    return modality, (
        f"no modality was given: selecting {modality}, which {counts[modality]} of {len(studies)} studies hold"
        + (f" (other modalities, studies: {others})" if others else "")
    )
