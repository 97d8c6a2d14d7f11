"""The dataset's QC report: one self-contained HTML file that opens offline.

The runner fills a :class:`Report` — a :class:`ReportCase` per exported case (its montage from
:mod:`.qc` as PNG bytes), the split table (:func:`split_rows`), the quarantined cases and the
inputs left out (:class:`~.cases.Exclusion`) — and :func:`write_report` renders it. The page holds:

* a case table: case id, split, fold, channels, size (voxels, (x, y, z)), spacing (mm, (x, y, z)),
  orientation code (where the index axes point, LPS letters), value range, label volumes in ml per
  label name, warnings;
* the spacing, size and intensity distributions as plots;
* the split table (cases and patients per fold and in the test part);
* every quarantined case with its reason, and every input left out with its reason;
* each case's montage (radiological convention, see :mod:`.qc`).

Images are embedded as ``data:`` URIs; there is no script, no external style sheet, font or
link, and a Content-Security-Policy that forbids loading anything. Every value is HTML-escaped,
so a case id, label name, warning or reason can hold any text. The output depends only on the
:class:`Report` (cases and quarantined cases sorted by case id, whatever order the workers
finished in; no time stamp unless the runner passes one in ``facts``) and on the matplotlib
version that draws the plots.

**Privacy.** The report shows exactly what it is given and nothing else: it reads no file and no
header. The runner passes only pseudonymous data — case ids, patient *counts* (never patient
keys), :class:`~.cases.Exclusion` texts without source paths, warnings that name case ids — and
must not put source paths, file names or patient data into any field.

Montages are embedded as given, so the page grows by each one's PNG size (plus a third for
base64): for a dataset of thousands of cases pass small ones (``qc.montage(..., size=160)``).
Needs matplotlib for the plots (the ``qc`` extra).

>>> case = ReportCase("case_0001", size=(512, 512, 300), spacing=(0.7, 0.7, 2.5), split="train", fold=0)
>>> page = render_report(Report(cases=[case], quarantined=[QuarantinedCase("case_0002", "label <0.5>")]))
>>> "label &lt;0.5&gt;" in page and page.startswith("<!DOCTYPE html>")
True
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..atomic import atomic_write_text
from ..errors import require
from ..volume import Volume
from .cases import Exclusion
from .qc import CT_WINDOW, PERCENTILES, percentiles
from .splits import Splits

TITLE = "MedPrep dataset report"
INTENSITY_PERCENTILES = (1.0, 50.0, 99.0)
"""What :attr:`ReportCase.intensity` holds: these percentiles of the first channel."""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.warn, .warn { color: #a40; }
figure { display: inline-block; margin: 0.5em; }
figure img { background: #000; max-width: 100%; }
p.note { color: #555; font-size: 0.9em; max-width: 60em; }
"""


@dataclass(frozen=True)
class ReportCase:
    """One exported case as the report shows it (no patient data: the id is a pseudonym).

    Attributes
    ----------
    case_id:
        The case's pseudonym.
    size:
        Voxels along (x, y, z) (the exported image's ``Geometry.size``).
    spacing:
        Voxel spacing in mm, (x, y, z).
    split, fold:
        ``"train"``/``"test"`` and the cross-validation fold (``None`` for test cases).
    channels:
        The channel names, in order (``("CT",)``, ``("T1", "FLAIR")``).
    orientation:
        The orientation code of the grid (``"LPS"``, ``"RAS"`` ...).
    value_range:
        (min, max) of the voxels of all channels, NaN ignored; ``None`` when unknown.
    intensity:
        The :data:`INTENSITY_PERCENTILES` (1st, 50th, 99th) of the first channel; ``None`` when unknown.
    label_volumes_ml:
        Label name -> volume of its voxels in ml (background left out).
    warnings:
        What was noticed about the case (never identifying).
    montage:
        The case's QC montage as PNG bytes (:func:`.qc.montage`), or ``None``.
    """

    case_id: str
    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    split: str = ""
    fold: int | None = None
    channels: tuple[str, ...] = ()
    orientation: str = ""
    value_range: tuple[float, float] | None = None
    intensity: tuple[float, float, float] | None = None
    label_volumes_ml: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    montage: bytes | None = None

    @classmethod
    def from_volumes(
        cls,
        case_id: str,
        image: Volume,
        label: Volume | None = None,
        *,
        labels: Mapping[str, int] | None = None,
        split: str = "",
        fold: int | None = None,
        channels: Sequence[str] = (),
        warnings: Sequence[str] = (),
        montage: bytes | None = None,
    ) -> ReportCase:
        """Measure an exported case: geometry, value range, intensity percentiles and, with a
        ``label`` on the image grid, the volume (ml) of each label of ``labels`` (name -> value;
        without it, of each non-zero value present, named by its number).

        >>> v = Volume(np.ones((2, 10, 10), np.uint8), spacing=(1.0, 1.0, 5.0))
        >>> ReportCase.from_volumes("case_0001", v, v, labels={"background": 0, "liver": 1}).label_volumes_ml
        {'liver': 1.0}
        """
        volumes: dict[str, float] = {}
        if label is not None:
            array = label.array
            voxel_ml = float(np.prod(label.spacing)) / 1000.0
            table = labels if labels is not None else {str(v): int(v) for v in np.unique(array) if v != 0}
            for name, value in table.items():
                if value != 0:
                    volumes[name] = float(np.count_nonzero(array == value) * voxel_ml)
        return cls(
            case_id,
            size=image.geometry.size,
            spacing=image.spacing,
            split=split,
            fold=fold,
            channels=tuple(channels),
            orientation=image.geometry.orientation,
            value_range=image.value_range() if image.array.size else None,
            intensity=percentiles(image, INTENSITY_PERCENTILES),
            label_volumes_ml=volumes,
            warnings=tuple(warnings),
            montage=montage,
        )


@dataclass(frozen=True)
class SplitRow:
    """One row of the split table: a part of the dataset (``"fold 0"``, ``"test"``, ``"all"``)
    and how many cases and distinct patients it holds."""

    part: str
    cases: int
    patients: int


class QuarantinedCase(NamedTuple):
    """A case that could not be exported, and why (``reason`` names no path or patient data);
    a tuple, so that quarantined cases sort by case id, then reason."""

    case_id: str
    reason: str


@dataclass(frozen=True)
class Report:
    """Everything the report shows; the runner fills it (see the privacy note in the module doc).

    Attributes
    ----------
    cases:
        The exported cases (shown sorted by case id).
    splits:
        The split table's rows, in the order given (:func:`split_rows`).
    quarantined:
        The cases left out by an error (shown sorted by case id).
    excluded:
        The inputs a source did not select (stacks, table rows), in the order given.
    labels:
        The dataset's label table (name -> value): the order of the label-volume columns.
    warnings:
        Dataset-wide warnings.
    facts:
        Name -> value lines shown at the top in the order given (format, dataset folder name,
        MedPrep version, a time stamp if the runner wants one).
    title:
        The page title.
    """

    cases: Sequence[ReportCase] = ()
    splits: Sequence[SplitRow] = ()
    quarantined: Sequence[QuarantinedCase] = ()
    excluded: Sequence[Exclusion] = ()
    labels: Mapping[str, int] = field(default_factory=dict)
    warnings: Sequence[str] = ()
    facts: Mapping[str, str] = field(default_factory=dict)
    title: str = TITLE


def split_rows(splits: Splits, patients: Mapping[str, str]) -> tuple[SplitRow, ...]:
    """The split table of ``splits``: one row per fold, then ``test``, then ``all``.

    ``patients`` maps each case id to its opaque patient key; only the number of distinct keys
    per row is kept (a patient with an unlabelled study in test and others in train counts in
    both, and once in ``all``).

    >>> s = Splits(test=("case_0003",), folds=(("case_0001",), ("case_0002", "case_0004")))
    >>> [tuple(vars(r).values()) for r in split_rows(s, {"case_0001": "a", "case_0002": "b", "case_0003": "c", "case_0004": "b"})]
    [('fold 0', 1, 1), ('fold 1', 2, 1), ('test', 1, 1), ('all', 4, 3)]
    """
    parts = [(f"fold {k}", fold) for k, fold in enumerate(splits.folds)]
    parts += [("test", splits.test), ("all", splits.train + splits.test)]
    return tuple(SplitRow(name, len(ids), len({patients[c] for c in ids})) for name, ids in parts)


# --- rendering -------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float, digits: int = 4) -> str:
    """A number without exponent, ``digits`` significant digits, trailing zeros dropped."""
    value = float(value)
    if not np.isfinite(value):
        return str(value)
    return np.format_float_positional(value, precision=digits, unique=False, fractional=False, trim="-")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> str:
    """A table of already-escaped cells (a cell ``("num", text)`` is right-aligned)."""
    if not rows:
        return f"<p>{_e(empty)}</p>"
    head = f"<thead><tr>{''.join(f'<th>{_e(h)}</th>' for h in header)}</tr></thead>" if any(header) else ""
    body = []
    for row in rows:
        cells = "".join(f'<td class="{c[0]}">{c[1]}</td>' if isinstance(c, tuple) else f"<td>{c}</td>" for c in row)
        body.append(f"<tr>{cells}</tr>")
    return f"<table>{head}<tbody>{''.join(body)}</tbody></table>"


def _label_columns(report: Report, cases: Sequence[ReportCase]) -> list[str]:
    named = [n for n, v in sorted(report.labels.items(), key=lambda item: item[1]) if v != 0]
    extra = sorted({n for c in cases for n in c.label_volumes_ml} - set(named))
    return named + extra


def _case_rows(cases: Sequence[ReportCase], label_columns: Sequence[str]) -> list[list]:
    rows = []
    for n, case in enumerate(cases):
        name = _e(case.case_id)
        rows.append([
            f'<a href="#case-{n}">{name}</a>' if case.montage else name,
            _e(case.split),
            ("num", "" if case.fold is None else _e(case.fold)),
            _e(", ".join(case.channels)),
            ("num", " &times; ".join(_e(s) for s in case.size)),
            ("num", " &times; ".join(_num(s) for s in case.spacing)),
            _e(case.orientation),
            ("num", "" if case.value_range is None else " to ".join(_num(v, 6) for v in case.value_range)),
            *(("num", _num(case.label_volumes_ml[c]) if c in case.label_volumes_ml else "") for c in label_columns),
            ("warn", "".join(f"<div>{_e(w)}</div>" for w in case.warnings)),
        ])  # fmt: skip
    return rows


PLOTTING_MODULES = ("matplotlib.figure", "matplotlib.style", "matplotlib.ticker", "matplotlib.backends.backend_agg")
"""What the plots import (a third of a second)."""


def load_plotting_in_background() -> None:
    """Import :data:`PLOTTING_MODULES` on a daemon thread, for a caller that waits on other
    work before it renders (an export's main process while its workers run the cases); a
    failure is left for the plots' own import to report."""
    import importlib
    import threading

    def load() -> None:
        for name in PLOTTING_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # missing or broken: require() in _figure_png says so
                return

    threading.Thread(target=load, name="medprep-report-imports", daemon=True).start()


def _figure_png(draw: Callable, width: float, height: float, *, left: float = 0.7, bottom: float = 0.55) -> bytes:
    """A matplotlib figure of ``width`` x ``height`` inches drawn by ``draw(figure)`` as PNG
    bytes: default style, no mathtext (values are plain text), no metadata (the same data gives
    the same bytes). The margins are fixed, in inches (``left`` and ``bottom``: room for the
    tick labels and the axis label): matplotlib's automatic layout took twice as long as the
    drawing, at the end of every export."""
    style = require("matplotlib.style", feature="the QC report's plots", package="matplotlib")
    import matplotlib
    from matplotlib.figure import Figure  # a Figure without pyplot: no global state, no GUI backend

    with style.context("default"), matplotlib.rc_context({"text.parse_math": False}):
        figure = Figure(figsize=(width, height), dpi=100)
        figure.subplots_adjust(left=left / width, right=1 - 0.2 / width, bottom=bottom / height,
                               top=1 - 0.35 / height, wspace=0.5)  # fmt: skip
        draw(figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _histograms(columns: Sequence[tuple[str, Sequence[float]]], xlabel: str) -> bytes:
    def draw(figure):  # runs inside _figure_png, after its check that matplotlib is installed
        from matplotlib.ticker import MaxNLocator

        for axes, (title, values) in zip(figure.subplots(1, len(columns), squeeze=False)[0], columns):
            axes.hist(values, bins=min(20, max(1, len(set(values)))), color="#4477aa", edgecolor="white")
            axes.set_title(title)
            axes.set_xlabel(xlabel)
            axes.set_ylabel("cases")
            axes.yaxis.set_major_locator(MaxNLocator(integer=True))
            distinct = sorted(set(values))
            if len(distinct) <= 4:  # the values themselves, not ticks between them (512, not 511.75)
                axes.set_xticks(distinct, [_num(v) for v in distinct])
            else:
                axes.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=xlabel == "voxels"))  # labels that fit

    return _figure_png(draw, 3.2 * len(columns), 2.6)


def _intensity_plot(cases: Sequence[ReportCase]) -> bytes:
    def draw(figure):
        axes = figure.subplots()
        for n, case in enumerate(cases):
            if case.value_range is not None:
                axes.plot([n, n], case.value_range, color="#999999", linewidth=1)
            if case.intensity is not None:
                low, median, high = case.intensity
                axes.plot([n, n], [low, high], color="#4477aa", linewidth=5, solid_capstyle="butt")
                axes.plot([n], [median], marker="_", color="black", markersize=10)
        axes.set_xlim(-1, len(cases))
        if len(cases) <= 30:
            axes.set_xticks(range(len(cases)), [c.case_id for c in cases], rotation=90, fontsize=7)
        axes.set_xlabel("case (by id)")
        axes.set_ylabel("value (first channel)")
        axes.set_title("intensity per case")

    bottom = 1.0 if len(cases) <= 30 else 0.55  # room for the rotated case ids
    return _figure_png(draw, min(12.0, 4.0 + 0.15 * len(cases)), 3.4, left=0.95, bottom=bottom)


def _plots(cases: Sequence[ReportCase]) -> str:
    if not cases:
        return "<p>No case was exported.</p>"
    axes = ("x", "y", "z")
    spacing = _histograms([(f"spacing {a}", [c.spacing[n] for c in cases]) for n, a in enumerate(axes)], "mm")
    size = _histograms([(f"size {a}", [c.size[n] for c in cases]) for n, a in enumerate(axes)], "voxels")
    intensity = _intensity_plot(cases)
    captions = (
        (spacing, "Voxel spacing per index axis (mm)."),
        (size, "Image size per index axis (voxels)."),
        (intensity, "Per case: minimum to maximum (grey), 1st to 99th percentile (blue) and median (black) "
                    "of the first channel."),
    )  # fmt: skip
    return "".join(
        f'<figure><img src="{_data_uri(png)}" alt="{_e(text)}"><figcaption>{_e(text)}</figcaption></figure>'
        for png, text in captions
    )


def render_report(report: Report) -> str:
    """The report as an HTML page (a string); see the module docstring for what it holds."""
    cases = sorted(report.cases, key=lambda c: c.case_id)
    quarantined = sorted(QuarantinedCase(*q) for q in report.quarantined)
    labels = _label_columns(report, cases)
    facts = [
        *((_e(k), _e(v)) for k, v in report.facts.items()),
        ("exported cases", ("num", str(len(cases)))),
        ("quarantined cases", ("num", str(len(quarantined)))),
        ("inputs not selected", ("num", str(len(report.excluded)))),
    ]
    header = ["case", "split", "fold", "channels", "size x × y × z (voxels)", "spacing x × y × z (mm)",
              "orientation", "value range", *(f"{name} (ml)" for name in labels), "warnings"]  # fmt: skip
    montages = "".join(
        f'<figure id="case-{n}"><img src="{_data_uri(c.montage)}" alt="QC montage of {_e(c.case_id)}">'
        f"<figcaption>{_e(c.case_id)}</figcaption></figure>"
        for n, c in enumerate(cases)
        if c.montage
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        f"<title>{_e(report.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(report.title)}</h1>",
        _table(["", ""], facts, empty=""),
    ]
    if report.warnings:
        parts.append(
            "<h2>Warnings</h2><ul>" + "".join(f'<li class="warn">{_e(w)}</li>' for w in report.warnings) + "</ul>"
        )
    parts += [
        "<h2>Splits</h2>",
        _table(
            ["part", "cases", "patients"],
            [[_e(r.part), ("num", _e(r.cases)), ("num", _e(r.patients))] for r in report.splits],
            empty="No split table.",
        ),
        "<h2>Cases</h2>",
        '<p class="note">Size and spacing are in (x, y, z) index order; the orientation code names the '
        "patient direction (L/R, P/A, S/I) each index axis points to. Label volumes are in ml.</p>",
        _table(header, _case_rows(cases, labels), empty="No case was exported."),
        "<h2>Distributions</h2>",
        _plots(cases),
        "<h2>Quarantined cases</h2>",
        _table(
            ["case", "reason"], [[_e(q.case_id), _e(q.reason)] for q in quarantined], empty="No case was quarantined."
        ),
        "<h2>Inputs not selected</h2>",
        _table(
            ["input", "reason"],
            [[_e(x.what), _e(x.reason)] for x in report.excluded],
            empty="Every input was selected.",
        ),
        "<h2>Montages</h2>",
        '<p class="note">Axial, coronal and sagittal slices through the label&#39;s centroid (or the centre '
        "without a label), in physical proportions and radiological convention: patient right on the image "
        "left (axial, coronal), anterior on the left (sagittal). CT at "
        f"W{_num(CT_WINDOW[1])}/L{_num(CT_WINDOW[0])} HU; other modalities from the {_num(PERCENTILES[0])}st to the "
        f"{_num(PERCENTILES[1])}th percentile. Label outlines in one colour per label value.</p>",
        montages or "<p>No montage.</p>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def write_report(path: str | os.PathLike, report: Report, *, overwrite: bool = False) -> Path:
    """Render ``report`` and write it to ``path`` (``report.html``) through a staging folder and a rename."""
    return atomic_write_text(path, render_report(report), overwrite=overwrite)
