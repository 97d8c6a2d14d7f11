"""Discovery: grouping, skip reasons, the JSON contract, stable ids and the header index."""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import threading

import pytest
from conftest import corpus_case_dir, corpus_cases
from test_dicom_scan_fixtures import write_ct_series

from MedPrepLib.cli import main
from MedPrepLib.dicom import fastheader, header
from MedPrepLib.dicom import scan as scan_module
from MedPrepLib.dicom.index import HeaderIndex, open_index
from MedPrepLib.dicom.mosaic import tile_grid
from MedPrepLib.dicom.scan import scan, scan_files
from MedPrepLib.dicom.stack import SKIP_REASONS, Skipped
from MedPrepLib.errors import CancelledError, InputError

pytestmark = pytest.mark.pydicom_dependent

CONTRACT_SERIES_KEYS = {"id", "series_instance_uid", "modality", "n_files", "shape", "spacing", "warnings"}
CASES = {c["case_id"]: c for c in corpus_cases()}


def _case_dicom(case_id: str):
    if case_id not in CASES:
        pytest.skip(f"corpus case {case_id} not available")
    return corpus_case_dir(CASES[case_id]) / "dicom"


def _all_files(folder) -> set[str]:
    return {os.path.join(r, n) for r, _, names in os.walk(folder) for n in names}


def _accounted(result) -> tuple[list[str], list[str]]:
    in_stacks = [p for s in result.stacks for p in s.paths]
    skipped = [s.path for s in result.skipped]
    return in_stacks, skipped


# -- corpus ------------------------------------------------------------------------------------


@pytest.mark.corpus
@pytest.mark.parametrize("case_id", sorted(CASES) or ["none"])
def test_every_corpus_file_is_in_one_stack_or_skipped(corpus, case_id):
    folder = _case_dicom(case_id)
    result = scan(folder, cache=False)
    in_stacks, skipped = _accounted(result)
    assert len(in_stacks) == len(set(in_stacks)), "a file is in two stacks"
    assert not set(in_stacks) & set(skipped), "a file is both in a stack and skipped"
    assert set(in_stacks) | set(skipped) == _all_files(folder)
    assert all(s.reason in SKIP_REASONS for s in result.skipped)
    assert result.stacks, f"{case_id}: no stack found"


@pytest.mark.corpus
@pytest.mark.parametrize("case_id", sorted(CASES) or ["none"])
def test_stack_shape_matches_manifest(corpus, case_id):
    case = CASES.get(case_id) or pytest.skip("no corpus")
    result = scan(_case_dicom(case_id), cache=False).to_json_dict()
    dims = [int(v) for v in case["dims"].split("x")]
    mode = case["compare_mode"].split(":")[0]
    if mode == "mosaic" or "MOSAIC" in case["difficulty"]:
        # MANIFEST dims are the mosaic files' (tile image x files); the stack is de-mosaiced.
        (s,) = result["series"]
        assert s["kind"] == "mosaic"
        assert s["shape"][2] > 1
        assert s["shape"][0] * tile_grid(s["shape"][2]) == dims[0]
        if dims[2] > 1:
            assert s["shape"][3] == dims[2]  # one file per time point
        return
    if mode == "split":
        assert len(result["series"]) == 2
        assert sum(s["shape"][2] for s in result["series"]) == dims[2]
        return
    (s,) = result["series"]
    assert s["shape"][:3] == dims
    assert s["n_files"] == int(case["n_files"]) - (1 if "DIRFILE" in case["notes"] else 0)


@pytest.mark.corpus
def test_philips_dirfile_is_skipped_and_tilt_reported(corpus):
    folder = _case_dicom("ct_philips_ingenuity_tilt_neg18")
    result = scan(folder, cache=False)
    (skipped,) = result.skipped
    assert os.path.basename(skipped.path) == "DIRFILE" and skipped.reason == "dicomdir"
    (s,) = result.to_json_dict()["series"]
    assert s["n_files"] == 54 and s["shape"] == [512, 512, 54]
    assert any("18.50 deg" in w for w in s["warnings"])


@pytest.mark.corpus
def test_mixed_orientation_series_yields_two_stacks(corpus):
    result = scan(_case_dicom("mr_philips_mixed_orientation"), cache=False)
    assert len(result.stacks) == 2
    assert len({s.series_instance_uid for s in result.stacks}) == 1
    assert len({s.id for s in result.stacks}) == 2
    assert sorted(len(s.headers) for s in result.stacks) == [2, 2]


@pytest.mark.corpus
def test_gap_is_reported(corpus):
    (s,) = scan(_case_dicom("ct_ge_lightspeed16_gap4"), cache=False).to_json_dict()["series"]
    assert any("uneven slice spacing" in w and "10.000 mm" in w and "usual step is 5.000 mm" in w for w in s["warnings"])
    assert s["spacing"][2] == pytest.approx(5.0)


@pytest.mark.corpus
def test_ids_are_independent_of_file_names_and_order(corpus, tmp_path):
    src = _case_dicom("mr_philips_mixed_orientation")
    files = sorted(_all_files(src))
    for k, f in enumerate(reversed(files)):  # other names, other order
        shutil.copy(f, tmp_path / f"copy_{k:02d}")
    a = scan(src, cache=False)
    b = scan(tmp_path, cache=False)
    c = scan_files(list(reversed(files)), cache=False)
    ids = sorted(s.id for s in a.stacks)
    assert ids == sorted(s.id for s in b.stacks) == sorted(s.id for s in c.stacks)
    assert ids == sorted(s.id for s in scan(src, cache=False).stacks)


# -- CLI contract --------------------------------------------------------------------------------


def test_cli_json_contract(tmp_path, capsys):
    write_ct_series(tmp_path / "a", 4)
    (tmp_path / "a" / "readme.txt").write_text("not an image")
    assert main(["scan", str(tmp_path), "--json", "--no-cache"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"series", "skipped", "label_sources"}  # label_sources added by issue 10
    assert data["label_sources"] == []
    (s,) = data["series"]
    assert CONTRACT_SERIES_KEYS <= set(s)
    assert s["n_files"] == 4 and s["modality"] == "CT"
    assert s["shape"] == [8, 8, 4]
    assert s["spacing"] == pytest.approx([0.8, 0.75, 2.5])  # x = column spacing, y = row spacing
    assert isinstance(s["warnings"], list)
    assert data["skipped"] == [
        {"path": str(tmp_path / "a" / "readme.txt"), "reason": "not_dicom", "detail": data["skipped"][0]["detail"]}
    ]
    text = json.dumps(data)
    assert "Synthetic^Phantom" not in text and "SYNTH-0001" not in text  # no patient identity
    # ids are stable between runs
    assert main(["scan", str(tmp_path), "--json", "--no-cache"]) == 0
    assert json.loads(capsys.readouterr().out)["series"][0]["id"] == s["id"]


def test_cli_table_and_missing_folder(tmp_path, capsys):
    write_ct_series(tmp_path, 3)
    assert main(["scan", str(tmp_path), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "CT" in out and "8 x 8 x 3" in out and "1 stack(s) in 3 file(s)" in out
    assert main(["scan", str(tmp_path / "nope"), "--no-cache"]) != 0
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1


# -- hidden files, progress, parallel ------------------------------------------------------------


def test_hidden_and_system_files_are_listed_not_read(tmp_path, monkeypatch):
    write_ct_series(tmp_path, 2)
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "._IM0001.dcm").write_bytes(b"\0\5\26\7")
    (tmp_path / "Thumbs.db").write_bytes(b"x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    read = []
    original = scan_module.read_one
    monkeypatch.setattr(scan_module, "read_one", lambda p: read.append(p) or original(p))
    result = scan(tmp_path, cache=False)
    assert sorted(os.path.basename(p) for p in read) == ["IM0001.dcm", "IM0002.dcm"]
    junk = {os.path.basename(s.path.rstrip(os.sep)): s for s in result.skipped}
    assert set(junk) == {".DS_Store", "._IM0001.dcm", "Thumbs.db", ".git"}
    assert all(s.reason == "not_dicom" and "not" in s.detail for s in junk.values())


def test_progress_and_cancel(tmp_path):
    write_ct_series(tmp_path, 3)
    seen = []
    scan(tmp_path, cache=False, progress=lambda label, f: seen.append(f))
    assert seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    with pytest.raises(CancelledError):
        scan(tmp_path, cache=False, progress=lambda label, f: "reading" in label)


def test_parallel_reading_gives_the_same_result(tmp_path, monkeypatch):
    monkeypatch.setattr(scan_module, "_CHUNK", 4)
    write_ct_series(tmp_path / "one", 6)
    write_ct_series(tmp_path / "two", 5)
    serial = scan(tmp_path, cache=False, workers=1).to_json_dict()
    parallel = scan(tmp_path, cache=False, workers=2).to_json_dict()
    assert serial == parallel and len(serial["series"]) == 2


@contextlib.contextmanager
def _another_thread():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def test_a_process_with_threads_is_not_forked(tmp_path, monkeypatch):
    # Forking copies the locks other threads hold (an export's starting worker pool has two):
    # the forked reader can hang on one. With a thread alive, workers come from a forkserver,
    # and only for very large folders when the caller does not ask for them.
    monkeypatch.setattr(scan_module, "_CHUNK", 4)
    write_ct_series(tmp_path / "one", 6)
    write_ct_series(tmp_path / "two", 5)
    serial = scan(tmp_path, cache=False, workers=1).to_json_dict()
    monkeypatch.delitem(sys.modules, "slicer", raising=False)  # an earlier test may have imported slicer-core
    with _another_thread():
        assert not scan_module._safe_to_fork()
        pool = scan_module._executor(2)
        assert pool._mp_context.get_start_method() == "forkserver"
        pool.shutdown()
        assert scan_module._default_workers(scan_module.PARALLEL_MIN_FILES) == 1
        assert scan_module._default_workers(scan_module.PARALLEL_MIN_FILES_FRESH) > 1 or os.cpu_count() == 1
        assert scan(tmp_path, cache=False, workers=2).to_json_dict() == serial
    if scan_module._safe_to_fork():  # pytest itself may have threads left by an earlier test
        pool = scan_module._executor(2)
        assert pool._mp_context.get_start_method() == "fork"
        pool.shutdown()


def test_missing_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        scan(tmp_path / "missing", cache=False)


# -- the header index ------------------------------------------------------------------------------


def _forbid_parsing(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a DICOM file was parsed although the index holds it")

    monkeypatch.setattr(fastheader, "parse_raw", boom)
    monkeypatch.setattr(header, "read_header", boom)
    monkeypatch.setattr(scan_module, "read_one", boom)


def test_rescan_of_unchanged_files_reads_no_dicom(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_ct_series(data, 4)
    (data / "notes.txt").write_text("x")
    index_file = tmp_path / "cache" / "index.sqlite"
    first = scan(data, cache=index_file)
    assert first.n_cached == 0
    _forbid_parsing(monkeypatch)
    second = scan(data, cache=index_file)
    assert second.n_cached == second.n_files == 5
    assert second.to_json_dict() == first.to_json_dict()


def test_changed_file_is_read_again(tmp_path, monkeypatch):
    data = tmp_path / "data"
    paths = write_ct_series(data, 3)
    index_file = tmp_path / "index.sqlite"
    scan(data, cache=index_file)
    st = os.stat(paths[1])
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    read = []
    original = scan_module.read_one
    monkeypatch.setattr(scan_module, "read_one", lambda p: read.append(p) or original(p))
    result = scan(data, cache=index_file)
    assert read == [str(paths[1])]
    assert result.n_cached == 2 and len(result.stacks[0].headers) == 3
    # a file turned into garbage is re-read and now skipped
    paths[2].write_bytes(b"garbage")
    result = scan(data, cache=index_file)
    assert [(os.path.basename(s.path), s.reason) for s in result.skipped] == [("IM0003.dcm", "not_dicom")]


def test_index_beside_the_data_is_hidden_from_the_scan(tmp_path):
    write_ct_series(tmp_path, 2)
    scan(tmp_path, cache=tmp_path)
    assert (tmp_path / ".medprep-index.sqlite").is_file()
    again = scan(tmp_path, cache=tmp_path)
    assert again.n_cached == 2
    assert all(s.reason == "not_dicom" for s in again.skipped)  # the index files themselves, not read


def test_default_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDPREP_CACHE", str(tmp_path / "c"))
    write_ct_series(tmp_path / "d", 2)
    scan(tmp_path / "d")
    assert (tmp_path / "c" / "dicom-index.sqlite").is_file()


def test_corrupt_index_is_rebuilt_with_a_warning(tmp_path, caplog):
    write_ct_series(tmp_path / "d", 2)
    index_file = tmp_path / "index.sqlite"
    index_file.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING):
        result = scan(tmp_path / "d", cache=index_file)
    assert len(result.stacks) == 1
    assert any("damaged" in r.getMessage() for r in caplog.records)
    assert scan(tmp_path / "d", cache=index_file).n_cached == 2


def _store_rows(path: str, start: int) -> None:
    with HeaderIndex(path) as index:
        for k in range(start, start + 100):
            index.store([((f"/x/{k}", 1, 1), Skipped(f"/x/{k}", "not_dicom", ""))])


def test_two_processes_can_share_the_index(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    HeaderIndex(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_store_rows, args=(path, s)) for s in (0, 100)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with open_index(path) as index:
        assert len(index) == 200
        assert len(index.lookup([(f"/x/{k}", 1, 1) for k in range(200)])) == 200
        assert index.lookup([("/x/5", 2, 1)]) == {}  # another size: not a hit


def test_symbolic_links_are_followed_once_and_broken_ones_reported(tmp_path):
    data = tmp_path / "data"
    write_ct_series(data / "series", 3)
    (data / "loop").symlink_to(data, target_is_directory=True)  # a cycle
    (data / "dangling.dcm").symlink_to(tmp_path / "gone.dcm")
    result = scan(data, cache=False)
    assert [len(s.headers) for s in result.stacks] == [3]
    assert [(os.path.basename(s.path), s.reason) for s in result.skipped] == [("dangling.dcm", "unreadable")]


def test_scan_files_reports_missing_files(tmp_path):
    paths = write_ct_series(tmp_path, 2)
    result = scan_files([*paths, tmp_path / "gone.dcm"], cache=False)
    assert len(result.stacks[0].headers) == 2 and result.n_files == 3
    assert [(os.path.basename(s.path), s.reason) for s in result.skipped] == [("gone.dcm", "unreadable")]


def test_repeated_positions_without_a_time_key_count_distinct_slices(tmp_path):
    from pydicom.uid import generate_uid

    uid = generate_uid()
    write_ct_series(tmp_path, 3, series_uid=uid, prefix="A")
    write_ct_series(tmp_path, 3, series_uid=uid, prefix="B")  # same positions, other instances
    (s,) = scan(tmp_path, cache=False).to_json_dict()["series"]
    assert s["n_files"] == 6 and s["shape"] == [8, 8, 3]
    assert any("repeat" in w for w in s["warnings"])


_ORIGINAL_READ_CHUNK = scan_module._read_chunk


def _die_in_worker(paths):
    # In a worker (forked, or from the forkserver, which imports this module by name) it dies.
    if multiprocessing.parent_process() is not None:
        os._exit(3)  # a worker crashing hard (out of memory, a codec segfault ...)
    return _ORIGINAL_READ_CHUNK(paths)


@pytest.mark.parametrize("start", ["fork", "forkserver"])
def test_a_crashing_worker_does_not_lose_files(tmp_path, monkeypatch, caplog, start):
    monkeypatch.setattr(scan_module, "_CHUNK", 3)
    monkeypatch.setattr(scan_module, "_read_chunk", _die_in_worker)
    write_ct_series(tmp_path, 10)
    with _another_thread() if start == "forkserver" else contextlib.nullcontext():
        if start == "fork" and not scan_module._safe_to_fork():
            pytest.skip("this pytest process has other threads: its workers come from the forkserver (the other case)")
        with caplog.at_level(logging.WARNING):
            result = scan(tmp_path, cache=False, workers=2)
    assert [len(s.headers) for s in result.stacks] == [10] and not result.skipped
    assert any("process died" in r.getMessage() for r in caplog.records)


class _CountingPool:
    """A lent pool of threads that counts what it is given; ``stuck`` workers never answer
    (a worker still busy with something else)."""

    def __init__(self, stuck: bool = False, broken: bool = False):
        from concurrent.futures import Future, ThreadPoolExecutor

        self._threads = ThreadPoolExecutor(2)
        self._future = Future
        self.stuck, self.broken, self.submitted = stuck, broken, 0

    def submit(self, fn, *args):
        if self.broken:
            raise RuntimeError("cannot schedule new futures after shutdown")
        self.submitted += 1
        return self._future() if self.stuck else self._threads.submit(fn, *args)


@pytest.mark.parametrize("kind", ["working", "stuck", "broken"])
def test_header_reading_shares_with_lent_workers(tmp_path, monkeypatch, kind):
    # An export lends its worker pool to the scan: the headers are read here and there at
    # once; a pool that never answers or cannot take work costs no file and no waiting.
    monkeypatch.setattr(scan_module, "_CHUNK", 4)
    monkeypatch.setattr(scan_module, "HELPERS_MIN_FILES", 8)
    write_ct_series(tmp_path / "one", 9)
    write_ct_series(tmp_path / "two", 8)
    serial = scan(tmp_path, cache=False, workers=1).to_json_dict()
    pool = _CountingPool(stuck=kind == "stuck", broken=kind == "broken")
    seen = []
    with scan_module.header_helpers(pool, 2):
        shared = scan(tmp_path, cache=False, progress=lambda label, f: seen.append(label)).to_json_dict()
    assert shared == serial and len(shared["series"]) == 2
    assert [label for label in seen if "reading DICOM headers (" in label][-1] == "reading DICOM headers (17/17)"
    assert pool.submitted == (0 if kind == "broken" else 4)  # two in flight per worker at most
    with scan_module.header_helpers(pool, 2):  # an explicit worker count is the caller's choice
        before = pool.submitted
        assert scan(tmp_path, cache=False, workers=1).to_json_dict() == serial
        assert pool.submitted == before
