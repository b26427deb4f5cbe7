"""The reasoning-gym package (``reasoning-gym==0.1.25``, Apache-2.0) seen from ngym: which tasks
exist, rows drawn from them by seed with weights and per-task settings, and scoring with the
package's own scorer. Everything runs offline (the package's generators are procedural)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import BaseModel, Field

#: tasks whose rows carry no single reference answer (many answers are right; the package checks
#: them by simulation), so the oracle of the measured table cannot be built from the row; ``composite``
#: is the package's own mixer (this environment mixes instead). They are served when configured.
NO_REFERENCE_ANSWER = frozenset({"boxnet", "graph_color", "propositional_logic", "rubiks_cube", "rush_hour"})
EXCLUDED = frozenset({"composite"})
#: tasks whose scorer compares metadata grids as tuples of tuples: JSON rows hold lists, so their
#: metadata is turned back into tuples before scoring (else every answer, the right one too, gets 0.05)
TUPLE_METADATA = frozenset({"arc_agi", "rearc"})
_BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")


class TaskSpec(BaseModel):
    """One task of the mix: its weight and the package's settings for it (difficulty knobs)."""

    weight: float = Field(1.0, gt=0)
    config: dict[str, Any] = Field(default_factory=dict)


def task_names() -> list[str]:
    """Every task the installed package registers (sorted)."""
    from reasoning_gym.factory import DATASETS

    return sorted(set(DATASETS) - EXCLUDED)


def default_tasks() -> dict[str, TaskSpec]:
    """Every task with a reference answer, equal weights, the package's default settings."""
    return {name: TaskSpec() for name in task_names() if name not in NO_REFERENCE_ANSWER}


def _seed(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:4], "big")


def _plain(value: Any) -> Any:
    """JSON-safe metadata (tuples and sets as lists) so a row scores the same after a round trip."""
    return json.loads(json.dumps(value, default=lambda v: sorted(v) if isinstance(v, (set, frozenset)) else str(v)))


def draw(tasks: dict[str, TaskSpec], split: str, num_rows: int, seed: int) -> Iterator[dict[str, Any]]:
    """``num_rows`` entries ``{"question", "answer", "metadata"}``, tasks drawn by weight (seeded)."""
    import reasoning_gym

    unknown = sorted(set(tasks) - set(task_names()) - EXCLUDED)
    if unknown:
        raise KeyError(f"reasoning-gym has no task(s) {unknown}; known tasks: {', '.join(task_names())}")
    r = random.Random(f"reasoning_gym/{split}/{seed}")
    names = sorted(tasks)
    picks = r.choices(names, weights=[tasks[n].weight for n in names], k=num_rows)
    counts = Counter(picks)
    pools: dict[str, Iterator[dict[str, Any]]] = {}
    for name in names:
        if counts[name]:
            dataset = reasoning_gym.create_dataset(name, size=counts[name], seed=_seed(split, seed, name),
                                                   **tasks[name].config)
            pools[name] = iter([dataset[i] for i in range(counts[name])])
    for name in picks:
        entry = next(pools[name])
        metadata = _plain(entry["metadata"])
        metadata["source_dataset"] = name
        answer = entry.get("answer")
        yield {"question": entry["question"], "answer": None if answer is None else str(answer), "metadata": metadata}


def extract(text: str, fallback_to_text: bool = False) -> str | None:
    """The last ``<answer>...</answer>``, else the last ``\\boxed{...}``, else (only with
    ``fallback_to_text``, the reference's behaviour) the whole text; None when there is nothing."""
    from reasoning_gym.utils import extract_answer

    found = extract_answer(text, tag_name="answer")
    if found is not None:
        return str(found)
    boxed = _BOXED.findall(text)
    if boxed:
        return str(boxed[-1]).strip()
    if fallback_to_text and text.strip():
        return text.strip()
    return None


def _tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


def scoring_entry(task: str, entry: dict[str, Any]) -> dict[str, Any]:
    """The entry as the package's scorer expects it after the row's JSON round trip."""
    if task in TUPLE_METADATA:
        return {**entry, "metadata": _tuples(entry["metadata"])}
    return entry


def scorer(task: str) -> Callable[..., float]:
    """The package's scorer of ``task`` (KeyError naming the known tasks if there is none)."""
    import reasoning_gym

    if task not in task_names() and task not in EXCLUDED:
        raise KeyError(f"reasoning-gym has no task {task!r}; known tasks: {', '.join(task_names())}")
    fn: Callable[..., float] = reasoning_gym.get_score_answer_fn(task)
    return fn
