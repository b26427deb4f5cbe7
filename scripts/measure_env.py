"""The oracle and empty rows of an environment's measured table: every row of a dataset sent to the
environment's real ``/verify`` (in-process, no sockets) with the oracle response of its generator
(``oracle_response(row)``) and with an empty response; prints the mean rewards and the failures.

    python scripts/measure_env.py resources_servers/mcqa resources_servers/mcqa/data/validation.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ngym.devkit.testing.asgi import in_process_client  # noqa: E402
from ngym.env import EnvConfig, Environment  # noqa: E402
from ngym.server.client import ServerClient  # noqa: E402


def answered(row: dict[str, Any], text: str) -> dict[str, Any]:
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    return {**row, "response": {"output": [message] if text else []}}


async def measure(env_dir: Path, rows: list[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    name = env_dir.name
    app = importlib.import_module(f"resources_servers.{name}.app")
    oracle = importlib.import_module(f"resources_servers.{name}.generate").oracle_response
    cls = next(v for v in vars(app).values() if inspect.isclass(v) and issubclass(v, Environment)
               and v.__module__ == app.__name__)
    config = cls.config_type().model_validate({"name": name, "entrypoint": "app.py", "domain": "other", **settings})
    assert isinstance(config, EnvConfig)
    client = in_process_client({name: cls(config, ServerClient({})).build_app()})
    out: dict[str, Any] = {"rows": len(rows)}
    for label, make in (("oracle", oracle), ("empty", lambda row: "")):
        rewards, failures = [], []
        for row in rows:
            reply = await client.post(name, "/verify", json=answered(row, make(row)))
            if reply.status_code == 200:
                rewards.append(float(reply.json()["reward"]))
            else:
                failures.append(reply.text[:200])
        out[label] = {"mean_reward": sum(rewards) / len(rewards) if rewards else None, "scored": len(rewards),
                      "failures": len(failures), "first_failure": failures[0] if failures else None}
    await client.aclose()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("env_dir", type=Path)
    parser.add_argument("rows", type=Path)
    parser.add_argument("--settings", default="{}", help="JSON of extra instance settings")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
    print(json.dumps(asyncio.run(measure(args.env_dir, rows, json.loads(args.settings))), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
