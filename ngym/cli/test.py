"""ng_test: run one server's tests, then (for an environment) the conformance check."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ngym.cli.common import command_args, entrypoint, load
from ngym.config.paths import resolve_path
from ngym.devkit.conformance import check_server, project_root
from ngym.errors import ArgumentError

SUMMARY = """\
Run the pytest tests of one server directory (<entrypoint>/tests), then, for a resources server,
the conformance check: the config parses, the tools the example data declares are routes with
matching argument schemas, /verify gives a float reward for every example row, the example data
has 5 rows. +should_validate_data=true also checks data/example_metrics.json (present, 5 examples,
matching the data) and that no data/*conflict* file is left. Exit code 0 only if all pass.

  ng_test +entrypoint=resources_servers/example_single_tool_call
  ng_test +entrypoint=resources_servers/my_env +should_validate_data=true"""

#: pytest's exit code when it collected no test
NO_TESTS = 5


class TestArgs(BaseModel):
    """Test one server directory."""

    __test__ = False  # not a pytest test class

    entrypoint: str = Field(description="the server directory, e.g. resources_servers/my_env")
    should_validate_data: bool = Field(False, description="also check data/example_metrics.json and conflict files")


def run_pytest(server_dir: Path) -> int:
    """pytest on ``<server_dir>/tests`` from the project root (so ``resources_servers.<name>`` imports).

    A server written for NeMo Gym (its ``app.py`` imports ``nemo_gym``) is tested as the reference
    tests it: ``from app import ...`` works (the server directory is on the path) and bare ``async
    def`` tests run (pytest-asyncio's auto mode)."""
    from ngym.interop.reference import pytest_options

    root = project_root(server_dir) if server_dir.parent.name == "resources_servers" else server_dir.parent.parent
    extra_paths, options = pytest_options(server_dir)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), *extra_paths, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "pytest", str(server_dir / "tests"), "-q", "-p", "no:cacheprovider", *options]
    print(f"$ {' '.join(command)}  (in {root})", flush=True)
    return subprocess.run(command, cwd=root, env=env, check=False).returncode


@dataclass
class Outcome:
    """How one server directory fared: ``passed``, ``failed`` (its tests), ``missing`` (no tests
    collected), ``data_invalid`` (conformance or data checks), with the reasons."""

    status: Literal["passed", "failed", "missing", "data_invalid"]
    failures: list[str] = field(default_factory=list)


def test_server(server_dir: Path, should_validate_data: bool) -> Outcome:
    """``ng_test`` on one directory: its pytest tests, then (a resources server) the conformance check."""
    failures: list[str] = []
    status: Literal["passed", "failed", "missing", "data_invalid"] = "passed"
    if not (server_dir / "tests").is_dir():
        failures.append(f"no tests: {server_dir / 'tests'} does not exist")
        status = "missing"
    else:
        code = run_pytest(server_dir)
        if code == NO_TESTS:
            failures.append("pytest collected no tests")
            status = "missing"
        elif code != 0:
            failures.append(f"tests failed (pytest exit code {code})")
            status = "failed"
    if server_dir.parent.name == "resources_servers":
        report = check_server(server_dir, should_validate_data=should_validate_data)
        print(report.format())
        if report.problems and status == "passed":
            status = "data_invalid"
        failures += report.problems
    elif should_validate_data:
        print("note: +should_validate_data applies to resources servers only", file=sys.stderr)
    return Outcome(status, failures)


@entrypoint("ng_test", SUMMARY, TestArgs)
def main(argv: list[str]) -> int:
    cfg, _ = load(argv, command="ng_test", model=TestArgs)
    args = command_args(cfg, TestArgs, "ng_test")
    server_dir = resolve_path(args.entrypoint)
    if not server_dir.is_dir():
        raise ArgumentError(
            f"+entrypoint={args.entrypoint!r}: no such directory (looked in {Path.cwd()} and the ngym checkout). "
            f"Pass a server directory, e.g. +entrypoint=resources_servers/example_single_tool_call."
        )
    outcome = test_server(server_dir, args.should_validate_data)
    if outcome.failures:
        print(f"ng_test {args.entrypoint}: FAILED\n  - " + "\n  - ".join(outcome.failures), file=sys.stderr)
        return 1
    print(f"ng_test {args.entrypoint}: passed")
    return 0
