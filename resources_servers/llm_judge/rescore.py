"""Re-score an existing rollouts file with another judge or rubric, without re-running the policy.

Start an llm_judge instance configured with the judge and rubric you want (``ng_run`` with your
config), then send every rollout's recorded ``response`` to its ``/verify``:

    python resources_servers/llm_judge/rescore.py --rollouts results/judge_rollouts.jsonl \\
        --out results/judge_rescored.jsonl --server llm_judge_strict          # found via the head server
    python resources_servers/llm_judge/rescore.py ... --server-url http://127.0.0.1:8123  # or directly

Each output row is the new verify response (the row, the new ``reward`` and judge metrics) plus
``previous_reward``. Rollouts the judge could not score (a typed failure: timeout, unparseable
verdict) go to ``<out stem>_failures.jsonl`` with the error, never into the output with a 0.
It works for any environment's rollouts (``/verify`` is the same for all).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ngym.config.schema import HeadServerConfig
from ngym.server.client import ServerClient

VERIFY_KEYS_DROPPED = ("reward", "agent_ref")  # recomputed by /verify (agent_ref: not a task field)


@dataclass(slots=True)
class RescoreReport:
    rows: int = 0
    scored: int = 0
    failures: int = 0
    previous: list[float] = field(default_factory=list)
    new: list[float] = field(default_factory=list)

    def summary(self) -> str:
        def mean(xs: list[float]) -> str:
            return f"{sum(xs) / len(xs):.3f}" if xs else "-"

        return (
            f"rescored {self.scored}/{self.rows} rollouts ({self.failures} failed): "
            f"mean reward {mean(self.previous)} before, {mean(self.new)} now (same rows)"
        )


def failures_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_failures.jsonl")


async def rescore(
    client: ServerClient, server: str, rollouts: Path, out: Path, concurrency: int = 8
) -> RescoreReport:
    """Send every rollout of ``rollouts`` to ``server``'s /verify; write scored and failed rows."""
    report = RescoreReport()
    rows = [json.loads(line) for line in rollouts.read_text().splitlines() if line.strip()]
    report.rows = len(rows)
    results: list[tuple[dict[str, Any], dict[str, Any] | None, str | None]] = [({}, None, None)] * len(rows)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, row: dict[str, Any]) -> None:
        if "response" not in row:
            results[i] = (row, None, f"line {i + 1}: no recorded 'response' (is this a rollouts file?)")
            return
        body = {k: v for k, v in row.items() if k not in VERIFY_KEYS_DROPPED}
        async with gate:
            try:
                reply = await client.post(server, "/verify", json=body)
            except Exception as e:
                results[i] = (row, None, f"{type(e).__name__}: {e}")
                return
        if reply.status_code != 200:
            results[i] = (row, None, f"HTTP {reply.status_code}: {reply.text[:500]}")
            return
        results[i] = (row, reply.json(), None)

    await asyncio.gather(*(one(i, row) for i, row in enumerate(rows)))
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as good, failures_path(out).open("w") as bad:
        for row, verified, error in results:
            if verified is None:
                report.failures += 1
                bad.write(json.dumps({**row, "rescore_error": error}) + "\n")
                continue
            report.scored += 1
            previous = row.get("reward")
            if isinstance(previous, int | float):
                report.previous.append(float(previous))
                report.new.append(float(verified["reward"]))
            if "agent_ref" in row:
                verified["agent_ref"] = row["agent_ref"]
            good.write(json.dumps({**verified, "previous_reward": previous}) + "\n")
    return report


async def _main(args: argparse.Namespace) -> int:
    if args.server_url:
        client = ServerClient({"judge": args.server_url})
        server = "judge"
    else:
        host, _, port = args.head_server.rpartition(":")
        client = await ServerClient.from_head_server(HeadServerConfig(host=host or "127.0.0.1", port=int(port)))
        server = args.server
    try:
        report = await rescore(client, server, args.rollouts, args.out, args.concurrency)
    finally:
        await client.aclose()
    print(report.summary(), file=sys.stderr)
    if report.failures:
        print(f"failures: {failures_path(args.out)}", file=sys.stderr)
    return 0 if report.scored else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rollouts", type=Path, required=True, help="a rollouts file of ng_collect_rollouts")
    parser.add_argument("--out", type=Path, required=True, help="where the re-scored rows go")
    parser.add_argument("--server", default="llm_judge", help="the resources-server instance that re-scores")
    parser.add_argument("--server-url", help="its URL, instead of asking the head server")
    parser.add_argument("--head-server", default="127.0.0.1:11000", help="host:port of the deployment's head server")
    parser.add_argument("--concurrency", type=int, default=8)
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
