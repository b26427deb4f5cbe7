"""Balanced mixing: interleave several environments' rows so that every contiguous batch of ``B``
rows holds each environment in proportion to its weight.

Each batch gives environment ``i`` either ``floor(B * p_i)`` or ``ceil(B * p_i)`` rows (``p_i`` its
normalised weight). The slots left after the floors go to the environments with the largest
remainder, carried over from batch to batch, so over many batches every share is exact. Rows
within an environment are shuffled (seeded), and so are the positions inside each batch.

``fill="repeat"``: an environment whose rows run out is reshuffled and reused, until every row of
every environment has been written at least once. ``fill="drop"``: mixing stops at the first batch
an environment cannot fill; the rows left over are reported as unused.

>>> plan = balanced_plan({"a": 6, "b": 2}, batch_size=4, weights={"a": 1, "b": 1}, seed=0)
>>> [dict(sorted(c.items())) for c in plan.compositions()]
[{'a': 2, 'b': 2}, {'a': 2, 'b': 2}, {'a': 2, 'b': 2}]
>>> plan.stats["b"].repeated
4
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from ngym.errors import ArgumentError

Fill = Literal["repeat", "drop"]

#: a mixed file may hold at most this many times the available rows (repeat mode guard)
MAX_GROWTH = 10


@dataclass(slots=True)
class EnvStats:
    available: int
    written: int = 0
    repeated: int = 0
    per_batch: list[int] = field(default_factory=list)
    used: set[int] = field(default_factory=set)


@dataclass(slots=True)
class MixPlan:
    """The mixed order: ``rows[k] = (environment, index into that environment's rows)``."""

    batch_size: int
    weights: dict[str, float]
    fill: Fill
    seed: int
    rows: list[tuple[str, int]] = field(default_factory=list)
    stats: dict[str, EnvStats] = field(default_factory=dict)

    @property
    def num_batches(self) -> int:
        return len(self.rows) // self.batch_size

    def compositions(self) -> list[Counter[str]]:
        b = self.batch_size
        return [Counter(env for env, _ in self.rows[k * b : (k + 1) * b]) for k in range(self.num_batches)]

    def report(self) -> dict[str, Any]:
        """What ``<type>_mix_metrics.json`` holds: the settings, each environment's share and use,
        and each run of consecutive batches with the same composition."""
        runs: list[dict[str, Any]] = []
        for k, composition in enumerate(self.compositions()):
            counts = {env: composition.get(env, 0) for env in self.weights}
            if runs and runs[-1]["rows_per_environment"] == counts:
                runs[-1]["last_batch"] = k
                runs[-1]["num_batches"] += 1
            else:
                runs.append({"first_batch": k, "last_batch": k, "num_batches": 1, "rows_per_environment": counts})
        environments = {}
        for env, weight in self.weights.items():
            s = self.stats[env]
            environments[env] = {
                "weight": round(weight, 6),
                "target_rows_per_batch": round(self.batch_size * weight, 4),
                "rows_per_batch_min": min(s.per_batch, default=0),
                "rows_per_batch_max": max(s.per_batch, default=0),
                "rows_available": s.available,
                "rows_written": s.written,
                "share_written": round(s.written / len(self.rows), 4) if self.rows else 0.0,
                "rows_repeated": s.repeated,
                "rows_unused": s.available - len(s.used),
            }
        return {
            "mix": "balanced",
            "batch_size": self.batch_size,
            "seed": self.seed,
            "fill": self.fill,
            "num_rows": len(self.rows),
            "num_batches": self.num_batches,
            "environments": environments,
            "batches": runs,
        }


def normalise_weights(sizes: dict[str, int], weights: dict[str, float] | str) -> dict[str, float]:
    """``"proportional"`` (to the number of rows), ``"equal"``, or an explicit ``{env: weight}``."""
    if weights == "proportional":
        raw = {env: float(n) for env, n in sizes.items()}
    elif weights == "equal":
        raw = {env: 1.0 for env in sizes}
    elif isinstance(weights, dict):
        unknown = sorted(set(weights) - set(sizes))
        missing = sorted(set(sizes) - set(weights))
        if unknown or missing:
            raise ArgumentError(
                "+mix_weights must name every environment being mixed, and only those: "
                + (f"unknown {unknown}; " if unknown else "")
                + (f"missing {missing}; " if missing else "")
                + f"environments (agent instances) here: {sorted(sizes)}. Example: "
                f"+mix_weights={{{','.join(f'{e}:1' for e in sorted(sizes))}}}"
            )
        bad = {env: w for env, w in weights.items() if not (isinstance(w, int | float) and math.isfinite(w) and w > 0)}
        if bad:
            raise ArgumentError(f"+mix_weights: every weight must be a number > 0, got {bad}. Leave an environment "
                                f"out of the configs to exclude it.")
        raw = {env: float(weights[env]) for env in sizes}
    else:
        raise ArgumentError(
            f"+mix_weights={weights!r} is not a weighting: use proportional (default), equal, or "
            f"{{agent_name: weight, ...}}."
        )
    empty = sorted(env for env, n in sizes.items() if n == 0)
    if empty:
        raise ArgumentError(f"Cannot mix environment(s) {empty}: they have no valid rows.")
    total = sum(raw.values())
    return {env: w / total for env, w in raw.items()}


class _Pool:
    """One environment's row indices, shuffled; reshuffled and restarted when ``repeat`` runs out."""

    def __init__(self, size: int, rng: random.Random) -> None:
        self.rng = rng
        self.order = list(range(size))
        rng.shuffle(self.order)
        self.cursor = 0
        self.passes = 0

    def remaining(self) -> int:
        return len(self.order) - self.cursor

    def take(self) -> tuple[int, bool]:
        if self.cursor == len(self.order):
            self.rng.shuffle(self.order)
            self.cursor = 0
            self.passes += 1
        index = self.order[self.cursor]
        self.cursor += 1
        return index, self.passes > 0


def _allocate(
    batch_size: int, shares: dict[str, float], credit: dict[str, float], rng: random.Random
) -> dict[str, int]:
    """Largest remainder with carried credit: floor of each quota, the rest to the largest credits."""
    quota = {env: batch_size * p for env, p in shares.items()}
    counts = {env: math.floor(q) for env, q in quota.items()}
    for env in counts:
        credit[env] += quota[env] - counts[env]
    left = batch_size - sum(counts.values())
    tiebreak = {env: rng.random() for env in counts}
    for env in sorted(counts, key=lambda e: (-credit[e], tiebreak[e]))[:left]:
        counts[env] += 1
        credit[env] -= 1.0
    return counts


def balanced_plan(
    sizes: dict[str, int],
    *,
    batch_size: int,
    weights: dict[str, float] | str = "proportional",
    fill: Fill = "repeat",
    seed: int = 0,
) -> MixPlan:
    """Plan the mixed order of environments with ``sizes[env]`` rows each (see the module docstring)."""
    if batch_size < 1:
        raise ArgumentError(f"+batch_size={batch_size}: must be at least 1.")
    shares = normalise_weights(sizes, weights)
    rng = random.Random(seed)
    pools = {env: _Pool(n, rng) for env, n in sizes.items()}
    plan = MixPlan(batch_size, shares, fill, seed, stats={env: EnvStats(n) for env, n in sizes.items()})
    if fill == "repeat":
        needed = max(math.ceil(n / (batch_size * shares[env])) for env, n in sizes.items())
        if needed * batch_size > MAX_GROWTH * max(sum(sizes.values()), batch_size):
            raise ArgumentError(
                f"These weights would repeat rows to {needed * batch_size} mixed rows from {sum(sizes.values())} "
                f"available (more than {MAX_GROWTH}x): an environment with many rows has a small weight. Raise its "
                f"weight, or use +mix_fill=drop to stop when the first environment runs out."
            )
    credit = {env: 0.0 for env in sizes}
    while True:
        counts = _allocate(batch_size, shares, credit, rng)
        if fill == "drop" and any(pools[env].remaining() < n for env, n in counts.items()):
            break
        if fill == "repeat" and all(len(plan.stats[env].used) == n for env, n in sizes.items()):
            break
        batch: list[tuple[str, int]] = []
        for env, n in counts.items():
            stats = plan.stats[env]
            stats.per_batch.append(n)
            for _ in range(n):
                index, again = pools[env].take()
                stats.written += 1
                stats.repeated += int(again)
                stats.used.add(index)
                batch.append((env, index))
        rng.shuffle(batch)
        plan.rows.extend(batch)
    return plan
