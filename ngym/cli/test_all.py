"""ng_test_all: ng_test (with the data checks) on every server directory of the project that has a README."""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, Field

from ngym.cli.common import command_args, entrypoint, load
from ngym.cli.test import Outcome, test_server
from ngym.errors import InputError

SUMMARY = """\
Run ng_test +should_validate_data=true on every directory of resources_servers/, responses_api_agents/
and responses_api_models/ (relative to the current directory) that has a README.md: its pytest
tests, then for a resources server the conformance and data checks. Prints each directory's result
and a summary (passed, failed, tests missing, data invalid, with percentages); exits 1 if any
failed, has no tests or has invalid data. Directories without a README.md are listed and skipped;
+fail_on_total_and_test_mismatch=true makes them an error.

  ng_test_all
  ng_test_all +fail_on_total_and_test_mismatch=true"""

KINDS = ("resources_servers", "responses_api_agents", "responses_api_models")
LABELS = {"passed": "passed", "failed": "failed", "missing": "tests missing", "data_invalid": "data invalid"}


class TestAllArgs(BaseModel):
    """Test every server directory that has a README.md."""

    __test__ = False  # not a pytest test class

    fail_on_total_and_test_mismatch: bool = Field(
        False, description="fail when a server directory has no README.md (and so was not tested)"
    )


def candidates(root: Path) -> list[Path]:
    """Every server directory under ``root`` (``__pycache__`` and hidden folders left out)."""
    found = []
    for kind in KINDS:
        base = root / kind
        if base.is_dir():
            found += sorted(p for p in base.iterdir() if p.is_dir() and "pycache" not in p.name and not p.name.startswith("."))
    return found


def summary(results: dict[str, Outcome], skipped: list[Path]) -> str:
    total = len(results)
    lines = [f"ng_test_all: {total} server director{'y' if total == 1 else 'ies'} tested"]
    for status, label in LABELS.items():
        names = [name for name, outcome in results.items() if outcome.status == status]
        share = 100.0 * len(names) / total if total else 0.0
        lines.append(f"  {label:<14} {len(names):>3} ({share:.1f}%){': ' + ', '.join(names) if names and status != 'passed' else ''}")
    if skipped:
        lines.append(f"  no README.md (not tested): {', '.join(str(p) for p in skipped)}")
    return "\n".join(lines)


@entrypoint("ng_test_all", SUMMARY, TestAllArgs)
def main(argv: list[str]) -> int:
    cfg, _ = load(argv, command="ng_test_all", model=TestAllArgs)
    args = command_args(cfg, TestAllArgs, "ng_test_all")
    root = Path.cwd()
    found = candidates(root)
    if not found:
        raise InputError(f"no server directories under {root} ({', '.join(KINDS)}): run ng_test_all from the project's root")
    tested = [p for p in found if (p / "README.md").is_file()]
    skipped = [p.relative_to(root) for p in found if p not in tested]
    results: dict[str, Outcome] = {}
    for directory in tested:
        name = str(directory.relative_to(root))
        print(f"\n=== ng_test {name} ===", flush=True)
        results[name] = test_server(directory, should_validate_data=True)
        for failure in results[name].failures:
            print(f"  - {failure}", file=sys.stderr)
    print("\n" + summary(results, skipped))
    if args.fail_on_total_and_test_mismatch and skipped:
        print(f"error: {len(skipped)} of {len(found)} server directories have no README.md and were not tested "
              f"(+fail_on_total_and_test_mismatch=true): add one to each", file=sys.stderr)
        return 1
    return 0 if all(o.status == "passed" for o in results.values()) else 1
