"""The Slicer extension's CMake files: complete, and building the tree Slicer expects.

Two levels:

* always: the CMake files are read by a small evaluator of the commands they use (set, file(GLOB
  / GLOB_RECURSE), list(FILTER / SORT / APPEND)) — every ``.py`` file of ``MedPrepLib`` and of
  the module's packages must be among what CMake compiles, every batch script of ``MedPrep/Batch``
  among what it copies beside the module (and none compiled as a module), the generic module tests
  and ``MedPrepTest`` registered, and the extension's top-level file must have the parts a Slicer
  extension needs, its icon and screenshot URLs naming files of this repository;
* when ``cmake`` and a C/C++ compiler are on PATH: the real CMake configures and builds the
  extension against a stand-in Slicer package whose macros copy files the way CTK's
  ``ctkMacroCompilePythonScript`` does, and the resulting scripted-module tree is checked:
  ``import MedPrepLib`` works from it, the module finds its UI and icon there, the batch scripts
  are in ``Batch/`` beside it (and run from there), and the only ``.py`` file at the top of the
  module folder — where Slicer looks for modules — is ``MedPrep.py``.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import textwrap
from fnmatch import fnmatch
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTED_LIB_DIR = "lib/Slicer-5.9/qt-scripted-modules"


# --- a tiny CMake evaluator ----------------------------------------------------------------------


def _strip_comments(text: str) -> str:
    out = []
    for line in text.splitlines():
        in_quote = False
        for n, ch in enumerate(line):
            if ch == '"':
                in_quote = not in_quote
            elif ch == "#" and not in_quote:
                line = line[:n]
                break
        out.append(line)
    return "\n".join(out)


def cmake_commands(path: Path) -> list[tuple[str, list[str]]]:
    """(lower-case command name, arguments) of every command in a CMake file, in order."""
    text = _strip_comments(path.read_text())
    commands = []
    position = 0
    command = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
    while match := command.search(text, position):
        depth, n, in_quote = 1, match.end(), False
        while depth:
            ch = text[n]
            if ch == '"':
                in_quote = not in_quote
            elif not in_quote and ch in "()":
                depth += 1 if ch == "(" else -1
            n += 1
        body = text[match.end() : n - 1]
        args = [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"|[^\s"]+', body)]
        commands.append((match.group(1).lower(), args))
        position = n
    return commands


def _expand(value: str, variables: dict[str, str]) -> str:
    previous = None
    while previous != value:
        previous = value
        value = re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: variables.get(m.group(1), ""), value)
    return value


def _glob(directory: Path, pattern: str, recurse: bool) -> list[Path]:
    rel = os.path.relpath(pattern, directory) if os.path.isabs(pattern) else pattern
    folder, _, name = rel.rpartition("/")
    base = directory / folder if folder else directory
    if not base.is_dir():
        return []
    candidates = base.rglob("*") if recurse else base.glob("*")
    return [p for p in candidates if p.is_file() and fnmatch(p.name, name)]


def evaluate(path: Path, variables: dict[str, str] | None = None) -> tuple[dict[str, list[str]], list]:
    """Run the list-building commands of a CMake file; returns (list variables, all commands)."""
    source_dir = path.parent
    variables = dict(variables or {})
    variables.update(CMAKE_CURRENT_SOURCE_DIR=str(source_dir))
    lists: dict[str, list[str]] = {}
    commands = cmake_commands(path)

    def value_of(arg: str) -> list[str]:
        whole = re.fullmatch(r"\$\{([A-Za-z0-9_]+)\}", arg)
        if whole and whole.group(1) in lists:
            return list(lists[whole.group(1)])
        return [_expand(arg, {**variables, **{k: ";".join(v) for k, v in lists.items()}})]

    for name, args in commands:
        if name == "set" and args:
            values = [v for a in args[1:] for v in value_of(a) if v and v != "PARENT_SCOPE"]
            lists[args[0]] = [p for v in values for p in v.split(";") if p]
        elif name == "file" and args and args[0] in ("GLOB", "GLOB_RECURSE"):
            var, rest = args[1], args[2:]
            relative = None
            patterns = []
            n = 0
            while n < len(rest):
                if rest[n] == "RELATIVE":
                    relative = Path(_expand(rest[n + 1], variables))
                    n += 2
                    continue
                if rest[n] not in ("CONFIGURE_DEPENDS", "LIST_DIRECTORIES", "FOLLOW_SYMLINKS"):
                    patterns.append(_expand(rest[n], variables))
                n += 1
            found = sorted({p for pat in patterns for p in _glob(source_dir, pat, args[0] == "GLOB_RECURSE")})
            lists[var] = [str(p.relative_to(relative)) if relative else str(p) for p in found]
        elif name == "list" and args:
            op, var = args[0], args[1]
            if op == "FILTER":
                mode, regex = args[2], args[4]
                keep = mode == "INCLUDE"
                lists[var] = [v for v in lists.get(var, []) if bool(re.search(regex.replace("\\\\", "\\"), v)) == keep]
            elif op == "SORT":
                lists[var] = sorted(lists.get(var, []))
            elif op == "APPEND":
                lists.setdefault(var, []).extend(v for a in args[2:] for v in value_of(a))
    return lists, commands


def call_arguments(commands, command: str) -> dict[str, list[str]]:
    """Keyword arguments of the (single) call to ``command``: {KEYWORD: [values]}."""
    calls = [args for name, args in commands if name == command.lower()]
    assert len(calls) == 1, f"expected one call to {command}, found {len(calls)}"
    keywords: dict[str, list[str]] = {}
    current = None
    for arg in calls[0]:
        if re.fullmatch(r"[A-Z][A-Z_]+", arg):
            current = arg
            keywords.setdefault(current, [])
        elif current:
            keywords[current].append(arg)
    return keywords


# The Slicer module's packages next to MedPrep.py: Qt-free glue, the panel, the self-test cases.
MODULE_PACKAGES = ("MedPrepCore", "MedPrepGui", "MedPrepSelfTest")


def _python_files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*.py") if "__pycache__" not in p.parts}


def _scripts(keyword_values: list[str], lists: dict[str, list[str]]) -> set[str]:
    out = set()
    for v in keyword_values:
        m = re.fullmatch(r"\$\{([A-Za-z0-9_]+)\}", v)
        for item in lists[m.group(1)] if m else [v]:
            for part in item.split(";"):
                if part:
                    out.add(part if part.endswith(".py") else part + ".py")
    return out


# --- the checks that always run ----------------------------------------------------------------


def test_medpreplib_cmake_compiles_every_python_file_of_the_package():
    lists, commands = evaluate(REPO / "MedPrepLib" / "CMakeLists.txt")
    call = call_arguments(commands, "ctkMacroCompilePythonScript")
    assert call["TARGET_NAME"] == ["MedPrepLib"]
    compiled = _scripts(call["SCRIPTS"], lists)
    on_disk = _python_files(REPO / "MedPrepLib")
    assert {"__init__.py", "geometry.py", "volume.py"} <= on_disk  # the evaluator sees the package
    assert on_disk - compiled == set(), f"not compiled into Slicer: {sorted(on_disk - compiled)}"
    assert compiled - on_disk == set(), f"listed but missing: {sorted(compiled - on_disk)}"
    # subpackages keep their folder (dicom/, recipe/, cli/)
    assert {"dicom/__init__.py", "recipe/__init__.py", "cli/__init__.py"} <= compiled
    assert call["DESTINATION_DIR"] == ["${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/MedPrepLib"]
    assert call["INSTALL_DIR"] == ["${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/MedPrepLib"]
    # package data other than Python travels too (nothing may be left behind by the build)
    assert call["RESOURCES"] == ["${MedPrepLib_PYTHON_RESOURCES}"]
    data = {
        str(p.relative_to(REPO / "MedPrepLib"))
        for p in (REPO / "MedPrepLib").rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix not in (".py", ".pyc")
        and p.name != "CMakeLists.txt"
    }
    resources = set(lists["MedPrepLib_PYTHON_RESOURCES"])
    assert data - resources == set(), f"package data not shipped to Slicer: {sorted(data - resources)}"
    assert not any(r.endswith((".py", ".pyc")) or "__pycache__" in r for r in resources)


def test_the_evaluator_notices_a_file_the_glob_would_miss(tmp_path):
    """Guard against a vacuous check: an explicit list missing a file is reported."""
    (tmp_path / "pkg").mkdir()
    for name in ("__init__.py", "a.py", "b.py"):
        (tmp_path / "pkg" / name).write_text("")
    cmake = tmp_path / "pkg" / "CMakeLists.txt"
    cmake.write_text('set(S __init__ a)\nctkMacroCompilePythonScript(TARGET_NAME pkg SCRIPTS "${S}")\n')
    lists, commands = evaluate(cmake)
    compiled = _scripts(call_arguments(commands, "ctkMacroCompilePythonScript")["SCRIPTS"], lists)
    assert _python_files(tmp_path / "pkg") - compiled == {"b.py"}


def test_module_cmake_lists_the_module_its_core_and_resources():
    lists, commands = evaluate(REPO / "MedPrep" / "CMakeLists.txt")
    call = call_arguments(commands, "slicerMacroBuildScriptedModule")
    assert call["NAME"] == ["${MODULE_NAME}"] and lists["MODULE_NAME"] == ["MedPrep"]
    scripts = {s.replace("${MODULE_NAME}", "MedPrep") for s in _scripts(call["SCRIPTS"], lists)}
    expected = {"MedPrep.py"} | {
        f"{package}/{n}" for package in MODULE_PACKAGES for n in _python_files(REPO / "MedPrep" / package)
    }
    batch = {p for p in _python_files(REPO / "MedPrep") if p.startswith("Batch/")}
    assert {p for p in _python_files(REPO / "MedPrep") if "/" in p} - batch <= expected, (
        "a module folder not in MODULE_PACKAGES"
    )
    assert expected - scripts == set(), f"not compiled: {sorted(expected - scripts)}"
    assert not scripts & batch, "batch scripts are run by path, not compiled as modules"
    assert "WITH_GENERIC_TESTS" in call, "the generic module tests are registered"
    assert {p for p in _python_files(REPO / "MedPrep") if "/" not in p} == {"MedPrep.py"}, (
        "Slicer loads every .py next to MedPrep.py as a module: put helpers in MedPrepCore/"
    )
    resources = [r.replace("${MODULE_NAME}", "MedPrep") for r in lists["MODULE_PYTHON_RESOURCES"]]
    assert sorted(resources) == ["Resources/Icons/MedPrep.png", "Resources/UI/MedPrep.ui"]
    for resource in resources:
        assert (REPO / resource).is_file(), resource
    assert ("slicer_add_python_unittest", ["SCRIPT", "${MODULE_NAME}.py"]) in commands
    tests = [
        n.name for n in ast.parse((REPO / "MedPrep" / "MedPrep.py").read_text()).body if isinstance(n, ast.ClassDef)
    ]
    assert "MedPrepTest" in tests  # what slicer_add_python_unittest runs from MedPrep.py


def test_module_cmake_copies_and_installs_every_batch_script_beside_the_module():
    lists, commands = evaluate(REPO / "MedPrep" / "CMakeLists.txt")
    on_disk = {p for p in _python_files(REPO / "MedPrep") if p.startswith("Batch/")}
    assert {"Batch/export.py", "Batch/export_scene.py"} <= on_disk
    assert set(lists["MODULE_BATCH_SCRIPTS"]) == on_disk
    copies = {args[0]: args[1:] for name, args in commands if name == "medprep_copy_beside_module"}
    assert copies["Copy${MODULE_NAME}BatchScripts"] == ["${CMAKE_CURRENT_SOURCE_DIR}", "${MODULE_BATCH_SCRIPTS}"]
    assert copies["Copy${MODULE_NAME}ModuleResourceFiles"] == ["${PROJECT_SOURCE_DIR}", "${MODULE_PYTHON_RESOURCES}"]
    assert ("function", ["medprep_copy_beside_module", "target", "source_dir"]) in commands
    installs = [args for name, args in commands if name == "install"]
    assert any("${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${file_dir}" in args for args in installs)


def test_top_level_cmake_is_a_slicer_extension():
    lists, commands = evaluate(REPO / "CMakeLists.txt")
    names = [name for name, _ in commands]
    assert names[0] == "cmake_minimum_required"
    assert ("project", ["MedPrep"]) in commands
    for field in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert lists.get(f"EXTENSION_{field}"), f"EXTENSION_{field} is not set"
    assert lists["EXTENSION_DEPENDS"] == ["NA"]
    assert lists["EXTENSION_CATEGORY"] == ["Informatics"]  # the module's own category (MedPrep.py)
    description = " ".join(lists["EXTENSION_DESCRIPTION"])
    assert "nnU-Net" in description and len(description) > 100
    homepage = lists["EXTENSION_HOMEPAGE"][0]
    owner_repo = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", homepage)
    assert owner_repo, homepage
    for field in ("ICONURL", "SCREENSHOTURLS"):
        for url in " ".join(lists[f"EXTENSION_{field}"]).split():
            # the files at the homepage's repository, branch main: they must be in this checkout
            m = re.fullmatch(r"https://raw\.githubusercontent\.com/([\w.-]+/[\w.-]+)/main/(.+)", url)
            assert m and m.group(1) == owner_repo.group(1), url
            picture = REPO / m.group(2)
            assert picture.is_file(), f"EXTENSION_{field} names {m.group(2)}, which is not in the repository"
            assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{picture} is not a PNG"
    assert lists["EXTENSION_ICONURL"][0].endswith("/Resources/Icons/MedPrep.png")  # the module's icon too
    order = [
        ("find_package", ["Slicer", "REQUIRED"]),
        ("include", ["${Slicer_USE_FILE}"]),
        ("add_subdirectory", ["MedPrepLib"]),
        ("add_subdirectory", ["MedPrep"]),
        ("include", ["${Slicer_EXTENSION_GENERATE_CONFIG}"]),
        ("include", ["${Slicer_EXTENSION_CPACK}"]),
    ]
    positions = [commands.index(c) for c in order]
    assert positions == sorted(positions), "extension commands out of order"


# --- configure and build with the real CMake against a stand-in Slicer --------------------------

FAKE_SLICER_CONFIG = f"""
set(Slicer_FOUND TRUE)
set(Slicer_USE_FILE ${{CMAKE_CURRENT_LIST_DIR}}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${{CMAKE_CURRENT_LIST_DIR}}/Nothing.cmake)
set(Slicer_EXTENSION_CPACK ${{CMAKE_CURRENT_LIST_DIR}}/Nothing.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR {SCRIPTED_LIB_DIR})
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR {SCRIPTED_LIB_DIR})
set(Slicer_USE_PYTHONQT ON)
"""

# Copy semantics of CTK's ctkMacroCompilePythonScript (CMake/ctkMacroCompilePythonScript.cmake):
# SCRIPTS get ".py" appended when missing and go from SOURCE_DIR/<file> to DESTINATION_DIR/<file>
# (relative paths, subfolders kept); RESOURCES likewise. Byte-compilation is left out.
FAKE_USE_SLICER = textwrap.dedent(
    r"""
    function(ctkMacroCompilePythonScript)
      cmake_parse_arguments(MY "NO_INSTALL_SUBDIR;GLOBAL_TARGET"
        "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR" "SCRIPTS;RESOURCES" ${ARGN})
      foreach(var TARGET_NAME SCRIPTS DESTINATION_DIR INSTALL_DIR)
        if(NOT DEFINED MY_${var})
          message(FATAL_ERROR "${var} is mandatory")
        endif()
      endforeach()
      if(NOT DEFINED MY_SOURCE_DIR)
        set(MY_SOURCE_DIR ${CMAKE_CURRENT_SOURCE_DIR})
      endif()
      set(copied)
      foreach(file IN LISTS MY_SCRIPTS MY_RESOURCES)
        if(file IN_LIST MY_SCRIPTS)
          get_filename_component(ext ${file} EXT)
          if(NOT ext MATCHES "py")
            set(file "${file}.py")
          endif()
        endif()
        if(IS_ABSOLUTE ${file})
          message(FATAL_ERROR "absolute path given to ctkMacroCompilePythonScript: ${file}")
        endif()
        add_custom_command(OUTPUT ${MY_DESTINATION_DIR}/${file} DEPENDS ${MY_SOURCE_DIR}/${file}
          COMMAND ${CMAKE_COMMAND} -E copy ${MY_SOURCE_DIR}/${file} ${MY_DESTINATION_DIR}/${file})
        list(APPEND copied ${MY_DESTINATION_DIR}/${file})
      endforeach()
      add_custom_target(Copy${MY_TARGET_NAME}PythonFiles ALL DEPENDS ${copied})
    endfunction()

    function(slicerMacroBuildScriptedModule)
      cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
      if(MY_SLICER_UNPARSED_ARGUMENTS)
        message(FATAL_ERROR "Unknown keywords: ${MY_SLICER_UNPARSED_ARGUMENTS}")
      endif()
      foreach(value IN LISTS MY_SLICER_SCRIPTS MY_SLICER_RESOURCES)
        if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${value} AND NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${value}.py)
          message(FATAL_ERROR "slicerMacroBuildScriptedModule given nonexistent file '${value}'")
        endif()
      endforeach()
      ctkMacroCompilePythonScript(TARGET_NAME ${MY_SLICER_NAME}
        SCRIPTS "${MY_SLICER_SCRIPTS}" RESOURCES "${MY_SLICER_RESOURCES}"
        DESTINATION_DIR ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}
        INSTALL_DIR ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR} NO_INSTALL_SUBDIR)
    endfunction()

    function(slicer_add_python_unittest)
      cmake_parse_arguments(MY "" "" "SCRIPT;SLICER_ARGS;TESTNAME_PREFIX" ${ARGN})
      if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT})
        message(FATAL_ERROR "slicer_add_python_unittest: no script ${MY_SCRIPT}")
      endif()
      file(APPEND ${CMAKE_BINARY_DIR}/unittests.txt "${MY_SCRIPT}\n")
    endfunction()
    """
)


def _have_build_tools() -> str | None:
    if shutil.which("cmake") is None:
        return "cmake is not on PATH"
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")) or not (
        shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    ):
        return "no C/C++ compiler (project(MedPrep) enables C and C++ as Slicer extensions do)"
    return None


@pytest.fixture(scope="module")
def built_extension(tmp_path_factory) -> Path:
    reason = _have_build_tools()
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("cmake")
    fake = root / "FakeSlicer"
    fake.mkdir()
    (fake / "SlicerConfig.cmake").write_text(FAKE_SLICER_CONFIG)
    (fake / "UseSlicer.cmake").write_text(FAKE_USE_SLICER)
    (fake / "Nothing.cmake").write_text("")
    build = root / "build"
    env = dict(os.environ, CMAKE_BUILD_PARALLEL_LEVEL="1")
    for cmd in (
        ["cmake", "-S", str(REPO), "-B", str(build), f"-DSlicer_DIR={fake}", "-DBUILD_TESTING=ON"],
        ["cmake", "--build", str(build)],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return build


def test_built_tree_has_library_module_core_and_resources(built_extension):
    lib = built_extension / SCRIPTED_LIB_DIR
    assert _python_files(lib / "MedPrepLib") == _python_files(REPO / "MedPrepLib")
    for data in (REPO / "MedPrepLib").rglob("*"):
        if data.is_file() and data.suffix not in (".py", ".pyc") and data.name != "CMakeLists.txt":
            assert (lib / "MedPrepLib" / data.relative_to(REPO / "MedPrepLib")).is_file(), f"{data} not copied"
    assert (lib / "MedPrep.py").is_file()
    for package in MODULE_PACKAGES:
        assert _python_files(lib / package) == _python_files(REPO / "MedPrep" / package), package
    assert (lib / "Resources" / "UI" / "MedPrep.ui").read_bytes() == (REPO / "Resources/UI/MedPrep.ui").read_bytes()
    assert (lib / "Resources" / "Icons" / "MedPrep.png").read_bytes() == (
        REPO / "Resources/Icons/MedPrep.png"
    ).read_bytes()
    assert (built_extension / "unittests.txt").read_text().split() == ["MedPrep.py"]
    for script in (REPO / "MedPrep" / "Batch").glob("*.py"):
        assert (lib / "Batch" / script.name).read_bytes() == script.read_bytes(), f"{script.name} not beside the module"
    # where Slicer looks for scripted modules: the files at the top of the module folder only
    assert sorted(p.name for p in lib.glob("*.py")) == ["MedPrep.py"]


def test_the_batch_export_script_runs_from_the_built_tree(built_extension, tmp_path):
    pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install 'medprep[slicer]')")
    script = built_extension / SCRIPTED_LIB_DIR / "Batch" / "export.py"
    code = (
        "import runpy, sys; sys.path.insert(0, sys.argv[1]); import application_stand_ins; "
        "application_stand_ins.install(sys.argv[3]); sys.argv = [sys.argv[2], '--', '--help']; "
        "runpy.run_path(sys.argv[0], run_name='__main__')"
    )
    stand_ins = str(REPO / "Testing" / "Slicer")
    result = subprocess.run([sys.executable, "-c", code, stand_ins, str(script), str(tmp_path)], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--db DIR" in result.stdout and "--out OUT" in result.stdout


def test_medpreplib_imports_from_the_built_tree(built_extension):
    lib = built_extension / SCRIPTED_LIB_DIR
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import MedPrepLib, MedPrepLib.geometry, MedPrepLib.volume; "
        "print(MedPrepLib.__file__)"
    )
    result = subprocess.run([sys.executable, "-c", code, str(lib)], capture_output=True, text=True, cwd=built_extension)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == (lib / "MedPrepLib" / "__init__.py").resolve()
