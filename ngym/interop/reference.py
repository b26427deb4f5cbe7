"""Folders written for NeMo Gym: how to recognise one, test it, and install its requirements.

``python -m ngym.interop.reference install resources_servers/<name> [...]`` installs the plain PyPI
lines of each folder's ``requirements.txt`` into this environment with one ``pip`` command. The
reference's first line (``-e nemo-gym[dev] @ ../../``) installs the reference package itself: it is
skipped (ngym's ``nemo_gym`` shim stands in for it), and so are lines pip cannot take from a package
index (``git+``/URL requirements), each named with the reason. ngym never installs at start-up: run
this once, after dropping the folder in.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

_IMPORTS_NEMO_GYM = re.compile(r"^\s*(from|import)\s+nemo_gym\b", re.MULTILINE)


def is_reference_server(server_dir: Path) -> bool:
    """True when the folder's ``app.py`` imports ``nemo_gym`` (written for the reference's API)."""
    app = server_dir / "app.py"
    return app.is_file() and bool(_IMPORTS_NEMO_GYM.search(app.read_text(errors="replace")))


def pytest_options(server_dir: Path) -> tuple[list[str], list[str]]:
    """(extra ``PYTHONPATH`` entries, extra pytest options) to run a server's tests as its framework
    does. ngym's own servers need none."""
    if not is_reference_server(server_dir):
        return [], []
    options: list[str] = []
    if importlib.util.find_spec("pytest_asyncio") is not None:
        options = ["-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=function"]
    else:
        print(
            f"note: {server_dir.name}'s tests are written for pytest-asyncio's auto mode, which is not installed; "
            f"`pip install 'ngym[nemo-gym]'` (or pytest-asyncio) to run its async tests",
            file=sys.stderr,
        )
    return [str(server_dir)], options


@dataclass(slots=True)
class Requirements:
    """The lines of one ``requirements.txt``: what pip installs and what is skipped (and why)."""

    install: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def read_requirements(path: Path) -> Requirements:
    found = Requirements()
    if not path.is_file():
        return found
    for raw in path.read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        name = line.removeprefix("-e").strip()
        if re.match(r"^nemo[-_]gym\b", name, re.IGNORECASE):
            found.skipped.append((line, "the reference package itself: ngym's nemo_gym shim stands in for it"))
        elif line.startswith("-") or "://" in line or line.startswith("git+"):
            found.skipped.append((line, "not a package-index requirement (a URL or pip option): install it yourself"))
        else:
            found.install.append(line)
    return found


def pip_command(server_dirs: list[Path]) -> tuple[list[str], list[str]]:
    """(the one pip command for every folder's installable lines, notes on what was skipped)."""
    lines: list[str] = []
    notes: list[str] = []
    for server_dir in server_dirs:
        reqs = read_requirements(server_dir / "requirements.txt")
        lines += [r for r in reqs.install if r not in lines]
        notes += [f"{server_dir.name}: skipped {line!r}: {why}" for line, why in reqs.skipped]
    return [sys.executable, "-m", "pip", "install", *lines], notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ngym.interop.reference", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install", help="install the requirements.txt of server folders (one pip command)")
    install.add_argument("server_dirs", nargs="+", type=Path)
    install.add_argument("--dry-run", action="store_true", help="print the command, install nothing")
    args = parser.parse_args(argv)
    missing = [d for d in args.server_dirs if not d.is_dir()]
    if missing:
        print(f"error: not a directory: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    command, notes = pip_command(args.server_dirs)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if len(command) == 4:
        print("nothing to install")
        return 0
    print("$ " + " ".join(command))
    return 0 if args.dry_run else subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
