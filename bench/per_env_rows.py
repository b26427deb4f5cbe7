"""The first N rows of each environment of a prepared file, one environment after another (in the
order given), for a per-environment measurement that completes environment by environment::

    python bench/per_env_rows.py data/starter_mix/validation.jsonl results/per_env_50.jsonl --rows 50 \
        --order mcqa structured_outputs reasoning_gym

Environments are named by their agent (``agent_ref.name``, the ``_simple_agent`` suffix optional);
those not in ``--order`` follow in the order they appear in the file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", type=Path, help="a JSONL file of rows with agent_ref (ng_prepare_data's output)")
    parser.add_argument("output", type=Path)
    parser.add_argument("--rows", type=int, default=50, help="rows per environment (default 50)")
    parser.add_argument("--order", nargs="*", default=[], help="environments first, in this order")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error(f"--rows {args.rows}: must be at least 1")
    taken: dict[str, list[str]] = {}
    with args.input.open() as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                agent = str(json.loads(line)["agent_ref"]["name"]).removesuffix("_simple_agent")
            except (ValueError, KeyError, TypeError):
                sys.exit(f"error: {args.input}:{number} is not a row with agent_ref.name; prepare the file with ng_prepare_data")
            rows = taken.setdefault(agent, [])
            if len(rows) < args.rows:
                rows.append(line if line.endswith("\n") else line + "\n")
    unknown = [name for name in args.order if name.removesuffix("_simple_agent") not in taken]
    if unknown:
        sys.exit(f"error: --order names {unknown}, which {args.input} does not hold; it holds {sorted(taken)}")
    order = [name.removesuffix("_simple_agent") for name in args.order]
    order += [name for name in taken if name not in order]
    with args.output.open("w") as out:
        for name in order:
            out.writelines(taken[name])
    print(", ".join(f"{name} {len(taken[name])}" for name in order) + f" -> {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
