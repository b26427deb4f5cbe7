"""Seeded generator of reasoning_gym rows in the reference's format (``question``, ``answer``,
``metadata.source_dataset``), drawn from the reasoning-gym package's procedural tasks.

``generate(split, num_rows, seed, tasks=None)``: ``tasks`` maps task names to ``{weight, config}``
(the package's per-task settings, e.g. ``{"basic_arithmetic": {"weight": 2, "config": {"max_terms": 4}}}``);
the default is every task with a reference answer (about 100), equal weights. From a config's
dataset entry: ``generator_args: {tasks: {...}}``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resources_servers.reasoning_gym.rg_tasks import TaskSpec, default_tasks, draw

SYSTEM_PROMPT = (
    "Given a problem, your task is to answer the question by thinking step-by-step in a clear and specific manner.\n"
    "Once you have thought about the reasoning process, provide the answer in the following format:\n"
    "<answer>answer here</answer>\n"
    "Do not explain your reasoning inside the answer tags, provide only the final answer. When an example is "
    "provided, you should strictly follow the format of the output/answer in that example."
)  # reasoning-gym's default system prompt


def generate(split: str, num_rows: int, seed: int, tasks: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """The ``ng_prepare_data`` generator protocol: rows of ``split``, deterministic in ``seed``."""
    specs = {name: TaskSpec.model_validate(spec or {}) for name, spec in tasks.items()} if tasks else default_tasks()
    for index, entry in enumerate(draw(specs, split, num_rows, seed)):
        yield {
            "responses_create_params": {"input": [{"role": "system", "content": SYSTEM_PROMPT},
                                                  {"role": "user", "content": entry["question"]}]},
            **entry,
            "uuid": f"{split}-{seed}-{index}",
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="train")
    parser.add_argument("--num-rows", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", type=json.loads, default=None, help='JSON, e.g. {"leg_counting": {}}')
    parser.add_argument("--out", type=Path, required=True)
    a = parser.parse_args()
    with a.out.open("w") as f:
        for row in generate(a.split, a.num_rows, a.seed, a.tasks):
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
