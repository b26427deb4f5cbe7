"""Statistics of a dataset's rows, as ``ng_prepare_data`` writes them to ``<stem>_metrics.json``.

The key names, the rounding and the sample standard deviation are the reference's (spec §11), so
metrics files committed with NeMo Gym v0.2.1 environments validate unchanged:

>>> stats = Running()
>>> for x in (0, 1, 2, 3, 4):
...     stats.add(x)
>>> stats.to_json()
{'Total # non-null values': 5, 'Average': 2.0, 'Min': 0.0, 'Max': 4.0, 'Standard deviation': 1.58}
>>> differences({"Average": 2.0}, {"Average": 2.004})
[]
>>> differences({"Average": 2.0}, {"Average": 2.01})
['Average: 2.0 (existing) != 2.01 (new)']
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ngym.wire.responses import Message, ResponseCreateParams

EXAMPLES = "Number of examples"
TOOLS = "Number of tools"
WORDS = "Json-dumped number of words (proxy for token count)"
TURNS = "Number of turns"
TEMPERATURE = "Temperature"
COUNT = "Total # non-null values"
SKIPPED_KEYS = frozenset({"responses_create_params", "response"})


def round_metric(x: float) -> float:
    """Two decimals when ``|x| >= 1``, else three (the reference's rule)."""
    return round(float(x), 2 if abs(x) >= 1 else 3)


@dataclass(slots=True)
class Running:
    """Count, mean, min, max and sample standard deviation, updated one value at a time (Welford)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, x: float) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)
        self.low = min(self.low, x)
        self.high = max(self.high, x)

    def merge(self, other: Running) -> Running:
        """The statistics of both sets of values together (Chan et al.'s parallel update)."""
        if not other.count:
            return Running(self.count, self.mean, self.m2, self.low, self.high)
        if not self.count:
            return Running(other.count, other.mean, other.m2, other.low, other.high)
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / n
        return Running(n, mean, m2, min(self.low, other.low), max(self.high, other.high))

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 0.0

    def to_json(self) -> dict[str, Any]:
        if not self.count:
            return {COUNT: 0, "Average": 0.0, "Min": 0.0, "Max": 0.0, "Standard deviation": 0.0}
        return {
            COUNT: self.count,
            "Average": round_metric(self.mean),
            "Min": round_metric(self.low),
            "Max": round_metric(self.high),
            "Standard deviation": round_metric(self.std),
        }


@dataclass(slots=True)
class Strings:
    """How many strings a key held, and how many distinct ones."""

    values: Counter[str] = field(default_factory=Counter)

    def add(self, value: str) -> None:
        self.values[value] += 1

    def merge(self, other: Strings) -> Strings:
        return Strings(self.values + other.values)

    def to_json(self) -> dict[str, int]:
        return {"unique_count": len(self.values), "total_count": sum(self.values.values())}


@dataclass(slots=True)
class DatasetMetrics:
    """The metrics of valid rows; ``add`` one row (a validated request and its other keys) at a time."""

    examples: int = 0
    tools: Running = field(default_factory=Running)
    words: Running = field(default_factory=Running)
    turns: Running = field(default_factory=Running)
    temperature: Running = field(default_factory=Running)
    numbers: dict[str, Running] = field(default_factory=dict)
    strings: dict[str, Strings] = field(default_factory=dict)
    order: dict[str, None] = field(default_factory=dict)

    def add(self, row: dict[str, Any], params: ResponseCreateParams) -> None:
        self.examples += 1
        dumped = params.model_dump(mode="json", exclude_unset=True)
        if "tools" in dumped:
            self.tools.add(len(params.tools or []))
        self.words.add(len(json.dumps(dumped).split()))
        turns = 1 if isinstance(params.input, str) else sum(
            1 for item in params.input if isinstance(item, Message) and item.role == "user"
        )
        if turns:
            self.turns.add(turns)
        if params.temperature is not None:
            self.temperature.add(params.temperature)
        for key, value in row.items():
            if key not in SKIPPED_KEYS:
                self._add_value(key, value)

    def _add_value(self, key: str, value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                self._add_value(key, item)
        elif isinstance(value, bool | int | float) and math.isfinite(value):
            self.order.setdefault(key)
            self.numbers.setdefault(key, Running()).add(float(value))
        elif isinstance(value, str):
            self.order.setdefault(key)
            self.strings.setdefault(key, Strings()).add(value)

    def merge(self, other: DatasetMetrics) -> DatasetMetrics:
        def both(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
            return {k: a[k].merge(b[k]) if k in a and k in b else (a.get(k) or b[k]) for k in {**a, **b}}

        return DatasetMetrics(
            examples=self.examples + other.examples,
            tools=self.tools.merge(other.tools),
            words=self.words.merge(other.words),
            turns=self.turns.merge(other.turns),
            temperature=self.temperature.merge(other.temperature),
            numbers=both(self.numbers, other.numbers),
            strings=both(self.strings, other.strings),
            order={**self.order, **other.order},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            EXAMPLES: self.examples,
            TOOLS: self.tools.to_json(),
            WORDS: self.words.to_json(),
            TURNS: self.turns.to_json(),
            TEMPERATURE: self.temperature.to_json(),
        }
        for key in self.order:
            entry: dict[str, Any] = {}
            if key in self.numbers:
                entry.update(self.numbers[key].to_json())
            if key in self.strings:
                entry.update(self.strings[key].to_json())
            out[key] = entry
        return out


def _tolerance(x: float) -> float:
    return 5e-3 if abs(x) >= 1 else 5e-4


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def differences(existing: Any, new: Any, path: str = "") -> list[str]:
    """Where ``new`` disagrees with ``existing``: every key of ``existing`` must be in ``new``; lists
    compare as multisets; floats within 5e-3 (``|x| >= 1``) or 5e-4; everything else exactly."""
    where = path or "(top level)"
    if isinstance(existing, dict):
        if not isinstance(new, dict):
            return [f"{where}: {existing!r} (existing) != {new!r} (new)"]
        out: list[str] = []
        for key, value in existing.items():
            sub = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append(f"{sub}: in the existing file, missing from the new metrics")
            else:
                out.extend(differences(value, new[key], sub))
        return out
    if isinstance(existing, list):
        if not isinstance(new, list) or Counter(map(_canonical, existing)) != Counter(map(_canonical, new)):
            return [f"{where}: {existing!r} (existing) != {new!r} (new)"]
        return []
    numeric = (int, float)
    if (
        isinstance(existing, numeric)
        and isinstance(new, numeric)
        and not isinstance(existing, bool)
        and not isinstance(new, bool)
        and (isinstance(existing, float) or isinstance(new, float))
    ):
        if abs(float(existing) - float(new)) <= _tolerance(float(existing)):
            return []
        return [f"{where}: {existing!r} (existing) != {new!r} (new)"]
    if existing != new or isinstance(existing, bool) != isinstance(new, bool):
        return [f"{where}: {existing!r} (existing) != {new!r} (new)"]
    return []
