"""An index of a rollouts JSONL file: one streaming pass records each line's byte offset and a small
summary (environment, reward, task index, status); rows are read back by seek when asked for.

Nothing but the summaries stays in memory (compact ``array`` columns, about 50 bytes a row), so a
100k-row file of any row size is indexed in one pass and served page by page. Failed rollouts come
from ``<stem>_failures.jsonl`` next to the file (written by ng_collect_rollouts) and are indexed
after the rollouts with status ``failed``. A file that grows (a collection still running) is
picked up by :meth:`RunIndex.refresh`: only complete new lines are indexed.
"""

from __future__ import annotations

import math
import os
import threading
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import orjson

from ngym.rollout.output import is_retried

TASK_INDEX = "_ng_task_index"
ROLLOUT_INDEX = "_ng_rollout_index"
T = TypeVar("T")
#: top-level keys that are not an environment's own metrics
RESERVED = frozenset({"responses_create_params", "response", "reward", "agent_ref", TASK_INDEX, ROLLOUT_INDEX})
#: status codes, in the order of ``STATUSES``
PASS, PARTIAL, ZERO, FAILED, UNSCORED, BAD = range(6)
STATUSES = ("pass", "partial", "zero", "failed", "unscored", "bad")
STATUS_HELP = {
    "pass": "reward ≥ 1",
    "partial": "0 < reward < 1",
    "zero": "reward ≤ 0",
    "failed": "in _failures.jsonl",
    "unscored": "no numeric reward",
    "bad": "not valid JSON",
}
ROLLOUTS, FAILURES = 0, 1
TOKEN_ARRAYS = ("prompt_token_ids", "generation_token_ids", "generation_log_probs")
NO_TASK = -1


def failures_path_for(path: Path) -> Path:
    """``results/out.jsonl`` -> ``results/out_failures.jsonl`` (as ng_collect_rollouts writes it)."""
    return path.with_name(path.stem + "_failures.jsonl")


def default_env_for(path: Path) -> str:
    """The environment of rows without ``agent_ref``: for an environment's ``example_rollouts.jsonl``
    (the reference's convention) the directory it lies in (``<env>/`` or ``<env>/data/``), else ``?``."""
    if not path.name.startswith("example_rollouts"):
        return "?"
    parent = path.resolve().parent
    if parent.name == "data":
        parent = parent.parent
    return parent.name or "?"


def status_of(reward: float) -> int:
    if math.isnan(reward):
        return UNSCORED
    if reward >= 1:
        return PASS
    if reward <= 0:
        return ZERO
    return PARTIAL


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        f = float(value)
        return f if math.isfinite(f) else None
    return None


def _env_name(row: dict[str, Any]) -> str | None:
    ref = row.get("agent_ref")
    if isinstance(ref, dict) and isinstance(name := ref.get("name"), str):
        return name
    if isinstance(ref, str):
        return ref
    return None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(slots=True)
class Filter:
    env: str | None = None
    status: str | None = None
    task: int | None = None
    min_reward: float | None = None
    max_reward: float | None = None

    def key(self) -> tuple[Any, ...]:
        return (self.env, self.status, self.task, self.min_reward, self.max_reward)


class RunIndex:
    """Offsets and summaries of one run (a rollouts file and its failures file)."""

    def __init__(self, path: str | Path, *, failures_path: str | Path | None = None, default_env: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} does not exist or is not a file")
        self.failures_path = Path(failures_path) if failures_path is not None else failures_path_for(self.path)
        self.default_env = default_env if default_env is not None else default_env_for(self.path)
        # one entry per indexed line (rollouts first, then failures; later growth is appended)
        self.source = array("b")
        self.offset = array("q")
        self.length = array("q")
        self.env = array("H")
        self.reward = array("d")
        self.task = array("q")
        self.rollout = array("q")
        self.status = array("b")
        self.calls = array("l")
        self.tokens = array("q")
        self.envs: list[str] = []
        self._env_ids: dict[str, int] = {}
        #: per environment id: metric name -> [sum, count] of the environment's numeric fields
        self.metric_sums: dict[int, dict[str, list[float]]] = {}
        self._ends = [0, 0]  # bytes of each file indexed so far
        self._lock = threading.RLock()
        self._cache: dict[tuple[Any, ...], Any] = {}
        self.index_seconds = 0.0
        self.refresh()

    # -- building -------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Index lines appended since the last pass (both files); return how many were added."""
        with self._lock:
            start = time.perf_counter()
            before = len(self.offset)
            self._scan(ROLLOUTS, self.path)
            if self.failures_path.is_file():
                self._scan(FAILURES, self.failures_path)
            added = len(self.offset) - before
            if added:
                self._cache.clear()
            self.index_seconds += time.perf_counter() - start
            return added

    def _scan(self, source: int, path: Path) -> None:
        start = self._ends[source]
        try:
            size = os.path.getsize(path)
        except OSError:
            return
        if size < start:  # the file was replaced: nothing sensible to do but keep what we have
            return
        if size == start:
            return
        pos = start
        with path.open("rb") as f:
            f.seek(start)
            for line in f:
                n = len(line)
                if not line.endswith(b"\n"):
                    # the last line without a newline: a complete row at the end of a finished
                    # file, or half of one still being written (left for the next refresh)
                    try:
                        row = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        break
                    self._add(source, pos, n, row)
                    pos += n
                    break
                if line.strip():
                    try:
                        row = orjson.loads(line)
                    except orjson.JSONDecodeError:
                        row = None
                    if not (source == FAILURES and is_retried(row)):  # an attempt tried again: not a failure
                        self._add(source, pos, n, row)
                pos += n
        self._ends[source] = pos

    def _env_id(self, name: str) -> int:
        i = self._env_ids.get(name)
        if i is None:
            i = self._env_ids[name] = len(self.envs)
            self.envs.append(name)
        return i

    def _add(self, source: int, offset: int, length: int, row: Any) -> None:
        env, reward, task, rollout, status, calls, tokens = self.default_env, math.nan, NO_TASK, NO_TASK, BAD, 0, 0
        if isinstance(row, dict):
            env = _env_name(row) or self.default_env
            task = _int(row.get(TASK_INDEX), NO_TASK)
            rollout = _int(row.get(ROLLOUT_INDEX), NO_TASK)
            if source == FAILURES:
                status = FAILED
            else:
                r = _number(row.get("reward"))
                reward = math.nan if r is None else r
                status = status_of(reward)
                response = row.get("response")
                if isinstance(response, dict):
                    output = response.get("output")
                    if isinstance(output, list):
                        calls = sum(1 for item in output if isinstance(item, dict) and item.get("type") == "function_call")
                    usage = response.get("usage")
                    if isinstance(usage, dict):
                        tokens = _int(usage.get("total_tokens"), 0) or (
                            _int(usage.get("input_tokens"), 0) + _int(usage.get("output_tokens"), 0)
                        )
        env_id = self._env_id(env)
        if isinstance(row, dict) and source == ROLLOUTS:
            sums = self.metric_sums.setdefault(env_id, {})
            for key, value in row.items():
                if key in RESERVED or key.startswith("_"):
                    continue
                v = _number(value)
                if v is not None:
                    acc = sums.get(key)
                    if acc is None:
                        sums[key] = [v, 1.0]
                    else:
                        acc[0] += v
                        acc[1] += 1
        self.source.append(source)
        self.offset.append(offset)
        self.length.append(length)
        self.env.append(env_id)
        self.reward.append(reward)
        self.task.append(task)
        self.rollout.append(rollout)
        self.status.append(status)
        self.calls.append(calls)
        self.tokens.append(tokens)

    # -- reading ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.offset)

    def read_bytes(self, i: int) -> bytes:
        """The raw line of entry ``i`` (without its newline), read by seek."""
        if not 0 <= i < len(self.offset):
            raise IndexError(i)
        path = self.path if self.source[i] == ROLLOUTS else self.failures_path
        with path.open("rb") as f:
            f.seek(self.offset[i])
            return f.read(self.length[i]).rstrip(b"\r\n")

    def read(self, i: int) -> Any:
        """Entry ``i`` parsed (``None`` for a line that is not valid JSON)."""
        try:
            return orjson.loads(self.read_bytes(i))
        except orjson.JSONDecodeError:
            return None

    def summary(self, i: int) -> dict[str, Any]:
        reward = self.reward[i]
        return {
            "id": i,
            "source": "failures" if self.source[i] == FAILURES else "rollouts",
            "env": self.envs[self.env[i]],
            "reward": None if math.isnan(reward) else reward,
            "status": STATUSES[self.status[i]],
            "task": None if self.task[i] == NO_TASK else self.task[i],
            "rollout": None if self.rollout[i] == NO_TASK else self.rollout[i],
            "tool_calls": self.calls[i],
            "tokens": self.tokens[i],
            "bytes": self.length[i],
        }

    # -- queries ----------------------------------------------------------------------------------

    def _cached(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        with self._lock:
            key = (*key, len(self.offset))
            hit = self._cache.get(key)
            if hit is None:
                if len(self._cache) > 64:
                    self._cache.clear()
                hit = self._cache[key] = compute()
            return hit

    def select(self, flt: Filter) -> array[int]:
        """Ids of the entries that match, in file order (cached per filter)."""
        return self._cached(("select", *flt.key()), lambda: self._select(flt))

    def _select(self, flt: Filter) -> array[int]:
        n = len(self.offset)
        ids: Iterable[int] = range(n)
        if flt.env is not None:
            env_id = self._env_ids.get(flt.env)
            if env_id is None:
                return array("l")
            env = self.env
            ids = [i for i in ids if env[i] == env_id]
        if flt.status is not None:
            code = STATUSES.index(flt.status)
            status = self.status
            ids = [i for i in ids if status[i] == code]
        if flt.task is not None:
            task, want = self.task, flt.task
            ids = [i for i in ids if task[i] == want]
        if flt.min_reward is not None or flt.max_reward is not None:
            lo = -math.inf if flt.min_reward is None else flt.min_reward
            hi = math.inf if flt.max_reward is None else flt.max_reward
            reward = self.reward
            ids = [i for i in ids if lo <= reward[i] <= hi]  # NaN compares false: unscored rows drop out
        return array("l", ids)

    def env_counts(self) -> list[dict[str, Any]]:
        with self._lock:  # a refresh in another thread appends to the columns one by one
            counts = [[0, 0] for _ in self.envs]
            for env_id, source in zip(self.env, self.source, strict=True):
                counts[env_id][source] += 1
            return [{"name": name, "rollouts": c[0], "failed": c[1]} for name, c in zip(self.envs, counts, strict=True)]

    def stats(self, bins: int = 10, ks: Iterable[int] | None = None) -> dict[str, Any]:
        """Per environment (and ``__all__``): reward summary, histogram, pass rate, pass@k, metrics."""
        key = ("stats", bins, None if ks is None else tuple(ks))
        return self._cached(key, lambda: self._stats(bins, None if ks is None else list(ks)))

    def _stats(self, bins: int, ks: list[int] | None) -> dict[str, Any]:
        rewards: dict[int, list[float]] = {i: [] for i in range(len(self.envs))}
        failed = [0] * len(self.envs)
        groups: dict[int, dict[int, list[int]]] = {i: {} for i in range(len(self.envs))}
        singles = [[0, 0] for _ in self.envs]  # rows without a task index: (n, passed), each its own task
        for env_id, source, reward, task, status in zip(self.env, self.source, self.reward, self.task, self.status, strict=True):
            if source == FAILURES:
                failed[env_id] += 1
                continue
            if math.isnan(reward):
                continue
            rewards[env_id].append(reward)
            passed = status == PASS
            if task == NO_TASK:
                singles[env_id][0] += 1
                singles[env_id][1] += passed
            else:
                g = groups[env_id].get(task)
                if g is None:
                    groups[env_id][task] = [1, int(passed)]
                else:
                    g[0] += 1
                    g[1] += passed
        all_rewards = [r for values in rewards.values() for r in values]
        lo, hi = histogram_range(all_rewards)
        envs = []
        for env_id, name in enumerate(self.envs):
            task_groups = list(groups[env_id].values()) + [[1, 1]] * singles[env_id][1] + [[1, 0]] * (singles[env_id][0] - singles[env_id][1])
            metrics = {
                k: v[0] / v[1] for k, v in sorted(self.metric_sums.get(env_id, {}).items()) if v[1]
            }
            envs.append({"env": name, **summarize(rewards[env_id], task_groups, lo, hi, bins, ks), "failed": failed[env_id], "metrics": metrics})
        envs.sort(key=lambda e: e["env"])
        every = [g for env_id in range(len(self.envs)) for g in groups[env_id].values()]
        for n_rows, n_pass in singles:
            every += [[1, 1]] * n_pass + [[1, 0]] * (n_rows - n_pass)
        total = {"env": "__all__", **summarize(all_rewards, every, lo, hi, bins, ks), "failed": sum(failed), "metrics": {}}
        return {"range": [lo, hi], "bins": bins, "environments": envs, "all": total}


def histogram_range(values: list[float]) -> tuple[float, float]:
    """[min(0, min), max(1, max)]: rewards in [0, 1] share one scale; others widen it."""
    if not values:
        return 0.0, 1.0
    return min(0.0, min(values)), max(1.0, max(values))


def histogram(values: list[float], lo: float, hi: float, bins: int) -> list[int]:
    counts = [0] * bins
    width = (hi - lo) / bins or 1.0
    for v in values:
        b = int((v - lo) / width)
        counts[min(max(b, 0), bins - 1)] += 1
    return counts


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one task with ``n`` samples of which ``c`` passed: 1 - C(n-c, k)/C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def default_ks(max_n: int) -> list[int]:
    """1, 2, 4, 8, ... up to the largest group, and the largest group itself."""
    ks, k = [], 1
    while k <= max_n:
        ks.append(k)
        k *= 2
    if max_n >= 1 and ks[-1] != max_n:
        ks.append(max_n)
    return ks


def summarize(
    rewards: list[float], groups: list[list[int]], lo: float, hi: float, bins: int, ks: list[int] | None
) -> dict[str, Any]:
    n = len(rewards)
    mean = sum(rewards) / n if n else None
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / n) if n and mean is not None else None
    max_n = max((g[0] for g in groups), default=0)
    pak = []
    for k in ks if ks is not None else default_ks(max_n):
        eligible = [g for g in groups if g[0] >= k]
        if eligible:
            pak.append({"k": k, "value": sum(pass_at_k(g[0], g[1], k) for g in eligible) / len(eligible), "tasks": len(eligible)})
    passed = sum(g[1] for g in groups)
    return {
        "n": n,
        "tasks": len(groups),
        "mean": mean,
        "std": std,
        "min": min(rewards) if rewards else None,
        "max": max(rewards) if rewards else None,
        "pass_rate": passed / n if n else None,
        "pass_at_k": pak,
        "histogram": {"edges": [lo + (hi - lo) * i / bins for i in range(bins + 1)], "counts": histogram(rewards, lo, hi, bins)},
    }


# -- comparison of two runs ----------------------------------------------------------------------


def _task_table(run: RunIndex) -> dict[tuple[str, int], list[float]]:
    """(env, task index) -> [n, sum of rewards, passes] over the scored rollouts of ``run``."""
    table: dict[tuple[str, int], list[float]] = {}
    with run._lock:
        envs = run.envs
        for env_id, source, reward, task, status in zip(run.env, run.source, run.reward, run.task, run.status, strict=True):
            if source == FAILURES or math.isnan(reward) or task == NO_TASK:
                continue
            key = (envs[env_id], task)
            t = table.get(key)
            if t is None:
                table[key] = [1, reward, float(status == PASS)]
            else:
                t[0] += 1
                t[1] += reward
                t[2] += status == PASS
    return table


def _side(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    if stats is None:
        return None
    return {k: stats[k] for k in ("n", "tasks", "mean", "std", "pass_rate", "failed")}


def _pool(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary of several environments' rollouts together, from their summaries."""
    n = sum(e["n"] for e in entries)
    scored = [e for e in entries if e["n"]]
    mean = sum(e["mean"] * e["n"] for e in scored) / n if n else None
    std = None
    if n and mean is not None:
        second = sum((e["std"] ** 2 + e["mean"] ** 2) * e["n"] for e in scored) / n
        std = math.sqrt(max(0.0, second - mean**2))
    return {
        "n": n,
        "tasks": sum(e["tasks"] for e in entries),
        "mean": mean,
        "std": std,
        "pass_rate": sum(e["pass_rate"] * e["n"] for e in scored) / n if n else None,
        "failed": sum(e["failed"] for e in entries),
    }


def compare_envs(a: RunIndex, b: RunIndex) -> list[dict[str, Any]]:
    """Per environment, then ``__all__``: both runs' n, mean reward, pass rate, and B − A.

    ``__all__`` pools the environments that both runs have (``shared_only`` says when some are left
    out), so an environment present in one run only does not move the overall difference."""
    by_a = {e["env"]: e for e in a.stats()["environments"]}
    by_b = {e["env"]: e for e in b.stats()["environments"]}
    rows = []
    for env in sorted(set(by_a) | set(by_b)):
        rows.append(_compare_row(env, by_a.get(env), by_b.get(env)))
    shared = sorted(set(by_a) & set(by_b))
    total = _compare_row("__all__", _pool([by_a[e] for e in shared]), _pool([by_b[e] for e in shared]))
    total["shared_only"] = set(by_a) != set(by_b)
    total["environments"] = len(shared)
    rows.append(total)
    return rows


def _compare_row(env: str, ea: dict[str, Any] | None, eb: dict[str, Any] | None) -> dict[str, Any]:
    a, b = _side(ea), _side(eb)
    delta = None
    if a and b and a["mean"] is not None and b["mean"] is not None:
        delta = b["mean"] - a["mean"]
    delta_pass = None
    if a and b and a["pass_rate"] is not None and b["pass_rate"] is not None:
        delta_pass = b["pass_rate"] - a["pass_rate"]
    return {"env": env, "a": a, "b": b, "delta_mean": delta, "delta_pass_rate": delta_pass}


SORTS = ("delta", "worse", "better", "task")


def compare_tasks(a: RunIndex, b: RunIndex) -> list[dict[str, Any]]:
    """Per (env, task index): mean reward and pass rate in A and B. Unsorted; see ``sort_tasks``."""
    ta, tb = _task_table(a), _task_table(b)
    rows = []
    for key in set(ta) | set(tb):
        x, y = ta.get(key), tb.get(key)
        mean_a = x[1] / x[0] if x else None
        mean_b = y[1] / y[0] if y else None
        rows.append(
            {
                "env": key[0],
                "task": key[1],
                "n_a": int(x[0]) if x else 0,
                "mean_a": mean_a,
                "pass_a": x[2] / x[0] if x else None,
                "n_b": int(y[0]) if y else 0,
                "mean_b": mean_b,
                "pass_b": y[2] / y[0] if y else None,
                "delta": mean_b - mean_a if mean_a is not None and mean_b is not None else None,
            }
        )
    return rows


def sort_tasks(rows: list[dict[str, Any]], sort: str) -> list[dict[str, Any]]:
    def by_task(r: dict[str, Any]) -> tuple[str, int]:
        return (r["env"], r["task"])

    if sort == "task":
        return sorted(rows, key=by_task)
    present = sorted((r for r in rows if r["delta"] is not None), key=by_task)
    missing = sorted((r for r in rows if r["delta"] is None), key=by_task)
    if sort == "worse":
        present.sort(key=lambda r: r["delta"])
    elif sort == "better":
        present.sort(key=lambda r: -r["delta"])
    else:
        present.sort(key=lambda r: -abs(r["delta"]))
    return present + missing
