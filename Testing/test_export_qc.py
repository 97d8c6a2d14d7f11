"""QC montages and the HTML report, checked on what a reader sees.

Montages: a bright sphere off-centre is cut by all three panels when its label is given (and
missed by the axial one without it), at the pixel its physical position maps to in radiological
convention (patient right on the image left, anterior at the top of the axial panel, superior at
the top of the others); the same anatomy stored in another orientation gives the same panels;
panel sizes follow the spacing; outline pixels carry their label value's colour and nothing else
is coloured; the PNG bytes repeat and hold no metadata chunk.

Report: parsed with :mod:`html.parser` — images only as ``data:`` URIs that decode to PNGs, no
script, no external reference, planted markup escaped (it comes back as text), quarantined cases
and unselected inputs listed with their reasons, the same page for the same report in any case
order, written atomically.
"""

from __future__ import annotations

import base64
import io
import re
import struct
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from MedPrepLib.errors import ArgumentError, MissingDependencyError, OutputExistsError
from MedPrepLib.export import qc, report
from MedPrepLib.export.cases import Exclusion
from MedPrepLib.export.report import QuarantinedCase, Report, ReportCase, SplitRow, render_report, split_rows
from MedPrepLib.export.splits import Splits
from MedPrepLib.processing.reorient import reorient
from MedPrepLib.volume import Volume

SPACING = (0.8, 1.0, 2.0)  # mm, (x, y, z)
SHAPE = (30, 40, 50)  # (z, y, x)
CENTRE_IJK = (36, 11, 21)  # (i, j, k): patient left of centre (+x in LPS), anterior, superior
RADIUS_MM = 5.0
SIZE = 100
PLANTED = '<script>alert("x")</script>'


def sphere_case(centre_ijk=CENTRE_IJK, value=1):
    """A CT-like volume (0 HU, 200 HU in a sphere) and the sphere's label, LPS, origin off zero."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    mm = [(idx - c) * s for idx, c, s in zip((i, j, k), centre_ijk, SPACING)]
    inside = sum(d**2 for d in mm) <= RADIUS_MM**2
    grid = dict(spacing=SPACING, origin=(-12.0, 30.0, 100.0))
    image = Volume(np.where(inside, 200, 0).astype(np.int16), **grid)
    label = Volume(np.where(inside, value, 0).astype(np.uint8), **grid)
    return image, label


def bright_centre(panel: np.ndarray) -> tuple[float, float]:
    """(row, column) of the centre of the panel's bright pixels (the sphere)."""
    rows, cols = np.nonzero(panel[..., 0].astype(int) > 200)
    assert rows.size, "the panel does not show the sphere"
    return rows.mean(), cols.mean()


def pixel(index: float, spacing: float, mm_per_pixel: float) -> float:
    """Where the centre of voxel ``index`` lands along a panel axis, in pixel-centre coordinates."""
    return (index + 0.5) * spacing / mm_per_pixel - 0.5


# --- montages ---------------------------------------------------------------------------------


def test_slices_go_through_the_label_centroid_in_radiological_convention():
    image, label = sphere_case()
    assert np.allclose(qc.crosshair(image, label), image.geometry.index_to_physical(CENTRE_IJK), atol=1e-6)
    axial, coronal, sagittal = qc.panels(image, label, modality="CT", size=SIZE)
    nz, ny, nx = SHAPE
    mm_per_pixel = max(nx * SPACING[0], ny * SPACING[1], nz * SPACING[2]) / SIZE
    i, j, k = CENTRE_IJK
    x, y, z = (pixel(c, s, mm_per_pixel) for c, s in zip((i, j, k), SPACING))
    z_down = pixel(nz - 1 - k, SPACING[2], mm_per_pixel)  # superior at the top: rows run S -> I
    # axial: columns R -> L (+x in LPS, so the sphere at x=36 of 50 is right of the panel's middle), rows A -> P
    assert np.allclose(bright_centre(axial), (y, x), atol=1.0)
    assert bright_centre(axial)[1] > axial.shape[1] / 2
    assert np.allclose(bright_centre(coronal), (z_down, x), atol=1.0)  # columns R -> L, rows S -> I
    assert np.allclose(bright_centre(sagittal), (z_down, y), atol=1.0)  # columns A -> P, rows S -> I


def test_without_a_label_the_slices_go_through_the_centre():
    image, label = sphere_case()
    assert np.allclose(qc.crosshair(image), image.geometry.center())
    empty = label.with_array(np.zeros_like(label.array))
    assert qc.crosshair(image, empty) == qc.crosshair(image)
    axial = qc.panels(image, None, modality="CT", size=SIZE)[0]
    assert axial[..., 0].max() < 200  # the centre slice (k=15) misses the sphere (k=21, 2.5 slices of radius)


@pytest.mark.parametrize("code", ["RAS", "PIL", "ASR", "LPI"])
def test_any_stored_orientation_gives_the_same_panels(code):
    image, label = sphere_case()
    expected = qc.panels(image, label, modality="CT", size=SIZE)
    stored = reorient(image, code), reorient(label, code)
    assert stored[0].geometry.orientation == code
    got = qc.panels(*stored, modality="CT", size=SIZE)
    for want, have in zip(expected, got):
        assert np.array_equal(want, have)
    assert np.allclose(qc.crosshair(*stored), qc.crosshair(image, label))
    assert qc.montage(*stored, modality="CT", size=SIZE) == qc.montage(image, label, modality="CT", size=SIZE)


def test_panels_are_in_physical_proportions():
    image = Volume(np.zeros((10, 30, 40), np.int16), spacing=(0.5, 1.0, 3.0))  # 20 x 30 x 30 mm
    shapes = [p.shape for p in qc.panels(image, modality="CT", size=90)]  # 1/3 mm per pixel
    assert shapes == [(90, 60, 3), (90, 60, 3), (90, 90, 3)]  # axial y x x, coronal z x x, sagittal z x y
    png = Image.open(io.BytesIO(qc.montage(image, modality="CT", size=90)))
    assert png.size == (60 + 60 + 90 + 6 * qc.MARGIN, 90 + 2 * qc.MARGIN)
    assert png.mode == "RGB"


def test_outline_pixels_have_their_label_colour():
    image, label = sphere_case()
    second = sphere_case(centre_ijk=(14, 28, 21), value=2)[1]
    both = label.with_array(label.array + second.array)
    axial = qc.panels(image, both, modality="CT", size=SIZE)[0]
    colour = {v: np.all(axial == qc.label_colour(v), axis=-1) for v in (1, 2)}
    assert colour[1].any() and colour[2].any() and not (colour[1] & colour[2]).any()
    assert qc.label_colour(1) != qc.label_colour(2)
    grey = (axial[..., 0] == axial[..., 1]) & (axial[..., 1] == axial[..., 2])
    assert np.array_equal(~grey, colour[1] | colour[2])  # nothing else is coloured
    # an outline: the sphere's centre pixel is image, not label colour, and the ring surrounds it
    row, col = (int(round(c)) for c in bright_centre(axial))
    assert grey[row, col] and axial[row, col, 0] > 200
    rows, cols = np.nonzero(colour[1])
    assert rows.min() < row < rows.max() and cols.min() < col < cols.max()
    # the montage PNG carries the same colours
    png = np.array(Image.open(io.BytesIO(qc.montage(image, both, modality="CT", size=SIZE))))
    for v in (1, 2):
        assert np.all(png == qc.label_colour(v), axis=-1).sum() >= colour[v].sum()


def png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        chunks.append(data[at + 4 : at + 8])
        at += 12 + length
    return chunks


def test_montage_bytes_repeat_and_carry_no_metadata(tmp_path):
    image, label = sphere_case()
    first = qc.montage(image, label, modality="CT", size=SIZE)
    assert qc.montage(image.copy(), label.copy(), modality="CT", size=SIZE) == first
    assert set(png_chunks(first)) == {b"IHDR", b"IDAT", b"IEND"}  # no tIME, tEXt, iTXt
    path = qc.write_montage(tmp_path / "case_0001.png", image, label, modality="CT", size=SIZE)
    assert path.read_bytes() == first
    with pytest.raises(OutputExistsError):
        qc.write_montage(path, image, label, modality="CT", size=SIZE)
    assert [p.name for p in tmp_path.iterdir()] == ["case_0001.png"]  # no staging left


def test_windows_ct_soft_tissue_and_others_by_percentiles():
    ramp = np.linspace(-1000.0, 1000.0, 4 * 5 * 101).reshape(4, 5, 101)
    volume = Volume(ramp)
    assert qc.display_window(volume, modality="ct") == (-160.0, 240.0)
    low, high = qc.display_window(volume, modality="MR")
    assert low == pytest.approx(np.percentile(ramp, 1)) and high == pytest.approx(np.percentile(ramp, 99))
    for hu, grey in ((-160, 0), (240, 255), (40, 127.5), (-1000, 0), (1000, 255)):
        uniform = Volume(np.full((4, 8, 8), hu, np.int16))
        assert int(qc.panels(uniform, modality="CT", size=16)[0][8, 8, 0]) == pytest.approx(grey, abs=0.5)
    flat = Volume(np.full((4, 8, 8), 7.0))
    assert qc.display_window(flat, modality="MR") == (7.0, 8.0)


def test_a_multichannel_volume_shows_its_first_channel():
    image, label = sphere_case()
    noise = np.random.default_rng(0).normal(0, 500, image.shape).astype(np.int16)
    both = Volume(np.stack([image.array, noise], axis=-1), image.geometry)
    for want, have in zip(qc.panels(image, label, modality="MR"), qc.panels(both, label, modality="MR")):
        assert np.array_equal(want, have)


def test_refuses_a_label_on_another_grid_and_a_silly_size():
    image, label = sphere_case()
    shifted = Volume(label.array, label.geometry.replace(origin=(0.0, 0.0, 0.0)))
    with pytest.raises(ArgumentError, match="not the image's"):
        qc.montage(image, shifted, modality="CT")
    with pytest.raises(ArgumentError, match="size"):
        qc.panels(image, modality="CT", size=2)


def test_missing_pillow_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    image, _ = sphere_case()
    with pytest.raises(MissingDependencyError, match="Pillow"):
        qc.montage(image, modality="CT")


# --- the report -------------------------------------------------------------------------------


class Page(HTMLParser):
    """Every start tag with its attributes, the text, and the rows of every table."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def attrs(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


def sample_report(order=1) -> Report:
    image, label = sphere_case()
    labels = {"background": 0, "tumour": 1}
    cases = [
        ReportCase.from_volumes(
            f"case_000{n}", image, label if n != 3 else None, labels=labels, split="train" if n < 3 else "test",
            fold=n - 1 if n < 3 else None, channels=("CT",), montage=qc.montage(image, label, modality="CT", size=48),
            warnings=(PLANTED,) if n == 2 else (),
        )
        for n in (1, 2, 3)
    ]  # fmt: skip
    quarantined = [
        QuarantinedCase("case_0005", "label holds 0.5 values"),
        QuarantinedCase("case_0004", f"unreadable {PLANTED}"),
    ]
    excluded = [Exclusion("stack s1a2b3c4d5 (CT, series 2, 'Topogram')", "a localizer: 3 slices; fewer than 10")]
    splits = split_rows(
        Splits(test=("case_0003",), folds=(("case_0001",), ("case_0002",))),
        {"case_0001": "a", "case_0002": "b", "case_0003": "a"},
    )
    return Report(
        cases=cases[::order], splits=splits, quarantined=quarantined[::order], excluded=excluded, labels=labels,
        warnings=("2 folds only",), facts={"format": "nnunet", "dataset": "Dataset501_MedPrep"},
    )  # fmt: skip


def test_report_is_self_contained_html():
    text = render_report(sample_report())
    page = Page(text)
    images = page.attrs("img")
    assert len(images) == 3 + 3  # three plots, three montages
    for img in images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert not re.search(r"https?://", text)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*file""", text, re.IGNORECASE)
    assert not page.attrs("script") and not page.attrs("link") and not page.attrs("iframe")
    assert all(a["href"].startswith("#case-") for a in page.attrs("a"))
    anchors = {a["id"] for a in page.attrs("figure") if "id" in a}
    assert {a["href"][1:] for a in page.attrs("a")} <= anchors
    csp = [m["content"] for m in page.attrs("meta") if m.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]


def test_report_escapes_planted_markup():
    text = render_report(sample_report())
    assert PLANTED not in text and "&lt;script&gt;" in text
    page = Page(text)
    assert not page.attrs("script")
    assert any(PLANTED in row for row in page.rows for row in row)  # comes back as text
    evil = Report(
        cases=[ReportCase(PLANTED, size=(1, 1, 1), spacing=(1, 1, 1), montage=b"\x89PNG", label_volumes_ml={PLANTED: 1.0})],
        excluded=[Exclusion(PLANTED, PLANTED)], facts={PLANTED: PLANTED}, warnings=[PLANTED], title=PLANTED,
    )  # fmt: skip
    evil_text = render_report(evil)
    assert PLANTED not in evil_text and not Page(evil_text).attrs("script")
    assert '"' not in "".join(a.get("alt", "") for a in Page(evil_text).attrs("img")).replace(PLANTED, "")


def test_report_lists_cases_splits_quarantine_and_exclusions():
    rows = Page(render_report(sample_report())).rows
    assert ["case_0004", f"unreadable {PLANTED}"] in rows
    assert ["case_0005", "label holds 0.5 values"] in rows
    assert ["stack s1a2b3c4d5 (CT, series 2, 'Topogram')", "a localizer: 3 slices; fewer than 10"] in rows
    assert ["fold 0", "1", "1"] in rows and ["test", "1", "1"] in rows and ["all", "3", "2"] in rows
    header = next(r for r in rows if r and r[0] == "case")
    assert "tumour (ml)" in header and header[-1] == "warnings"
    case_rows = [r for r in rows if r and r[0].startswith("case_000") and len(r) == len(header)]
    assert [r[0] for r in case_rows] == ["case_0001", "case_0002", "case_0003"]
    first = dict(zip(header, case_rows[0]))
    assert first["split"] == "train" and first["fold"] == "0" and first["orientation"] == "LPS"
    assert first["size x × y × z (voxels)"] == "50 × 40 × 30"
    assert first["spacing x × y × z (mm)"] == "0.8 × 1 × 2"
    assert first["value range"] == "0 to 200"
    ml = float(first["tumour (ml)"])
    assert ml == pytest.approx(4 / 3 * np.pi * RADIUS_MM**3 / 1000, rel=0.1)
    assert dict(zip(header, case_rows[2]))["tumour (ml)"] == ""  # unlabelled case
    assert dict(zip(header, case_rows[1]))["warnings"] == PLANTED


def test_report_case_measures_the_volumes():
    image, label = sphere_case()
    case = ReportCase.from_volumes("case_0001", image, label, labels={"background": 0, "tumour": 1, "cyst": 2})
    voxel_ml = np.prod(SPACING) / 1000
    assert case.label_volumes_ml == {"tumour": pytest.approx(np.count_nonzero(label.array) * voxel_ml), "cyst": 0.0}
    assert case.size == (50, 40, 30) and case.spacing == SPACING and case.orientation == "LPS"
    assert case.value_range == (0.0, 200.0)
    assert case.intensity == tuple(np.percentile(image.array, report.INTENSITY_PERCENTILES))
    bright = ReportCase.from_volumes("case_0001", image.with_array(image.array + 100))
    assert bright.intensity == tuple(v + 100 for v in case.intensity) and bright.label_volumes_ml == {}
    unnamed = ReportCase.from_volumes("case_0001", image, label)
    assert list(unnamed.label_volumes_ml) == ["1"]


def test_report_is_deterministic_and_written_atomically(tmp_path):
    text = render_report(sample_report())
    assert render_report(sample_report(order=-1)) == text  # worker order does not matter
    path = report.write_report(tmp_path / "report.html", sample_report())
    assert path.read_text(encoding="utf-8") == text
    with pytest.raises(OutputExistsError):
        report.write_report(path, sample_report())
    report.write_report(path, Report(), overwrite=True)
    assert "No case was exported." in path.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_split_rows_count_distinct_patients():
    splits = Splits(test=("c5",), folds=(("c1", "c2"), ("c3", "c4")))
    rows = split_rows(splits, {"c1": "a", "c2": "a", "c3": "b", "c4": "c", "c5": "a"})
    assert rows == (SplitRow("fold 0", 2, 1), SplitRow("fold 1", 2, 2), SplitRow("test", 1, 1), SplitRow("all", 5, 3))


@pytest.mark.parametrize("missing, package", [("matplotlib", "matplotlib"), ("PIL", "Pillow")])
def test_an_export_with_qc_checks_its_packages_before_any_work(tmp_path, monkeypatch, missing, package):
    # Up front (not at the last case), and without importing them: the check costs nothing.
    import importlib.util

    from MedPrepLib.export.runner import export_dataset

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
    with pytest.raises(MissingDependencyError, match=rf"'{package}'.*") as err:
        export_dataset(tmp_path / "no such source", tmp_path / "out")  # the source is not even looked at
    assert "--no-qc" in err.value.hint and not (tmp_path / "out").exists()


def test_checking_for_an_optional_package_does_not_import_it():
    import subprocess

    code = (
        "import sys; from MedPrepLib.errors import require_installed; "
        "require_installed('matplotlib', feature='a test'); assert 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(MissingDependencyError, match="'no_such_package_xyz'"):
        from MedPrepLib.errors import require_installed

        require_installed("no_such_package_xyz", feature="a test")


def test_missing_matplotlib_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.style", None)
    with pytest.raises(MissingDependencyError, match="matplotlib"):
        render_report(sample_report())
    assert "No case was exported." in render_report(Report())  # no plot, no matplotlib needed
