"""The viewer's HTTP server: a JSON API over one or two :class:`RunIndex` es and the static page.

Every list is paged on the server; the page never holds more than one page of rows or one rollout.
Routes (``run`` is ``a``, the main file, or ``b``, the compared one):

    GET /                          the page (static/index.html)
    GET /api/info                  files, row counts, environments, statuses (re-indexes appended lines)
    GET /api/rollouts              ?run&env&status&task&min_reward&max_reward&offset&limit -> a page of summaries
    GET /api/rollouts/{id}         one rollout for display (token id arrays replaced by counts), prev/next in the filter
    GET /api/rollouts/{id}/raw     the line exactly as stored
    GET /api/stats                 ?run&bins -> per-environment reward histogram, pass@k, mean, metrics
    GET /api/compare               per-environment mean reward / pass rate of A and B
    GET /api/compare/tasks         ?env&sort&changed&offset&limit -> per-task mean reward in A vs B
"""

from __future__ import annotations

import bisect
import math
import threading
from pathlib import Path
from typing import Any, Literal

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from ngym.viewer.index import (
    SORTS,
    STATUS_HELP,
    STATUSES,
    TOKEN_ARRAYS,
    Filter,
    RunIndex,
    compare_envs,
    compare_tasks,
    sort_tasks,
)
from ngym.wire.content import content_text

STATIC = Path(__file__).parent / "static"
PAGE_MAX = 500
PREVIEW_CHARS = 240


def _json(data: Any) -> Response:
    # orjson writes NaN/inf as null, which the page's JSON.parse accepts
    return Response(orjson.dumps(data), media_type="application/json")


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def preview(row: Any, failure: bool = False) -> dict[str, Any]:
    """What the list shows of a row: the last user message, the tools called, the final answer
    (for an entry of the failures file: its kind and error)."""
    if not isinstance(row, dict):
        return {"text": "(this line is not valid JSON)", "tools": [], "answer": ""}
    if failure:
        return {"text": f"{row.get('kind', 'failed')}: {row.get('error', '')}"[:PREVIEW_CHARS], "tools": [], "answer": ""}
    params = row.get("responses_create_params")
    messages = params.get("input") if isinstance(params, dict) else None
    text = ""
    if isinstance(messages, str):
        text = messages
    for m in _items(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            text = content_text(m.get("content"), "\n")
    tools: list[str] = []
    answer = ""
    response = row.get("response")
    for item in _items(response.get("output") if isinstance(response, dict) else None):
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call" and isinstance(item.get("name"), str):
            if item["name"] not in tools:
                tools.append(item["name"])
        elif item.get("type") == "message" and item.get("role", "assistant") == "assistant":
            answer = content_text(item.get("content"), "\n") or answer
    return {"text": " ".join(text.split())[:PREVIEW_CHARS], "tools": tools[:8], "answer": " ".join(answer.split())[:PREVIEW_CHARS]}


def _strip_tokens(item: Any) -> Any:
    """Replace token id / log-prob arrays of one item by their counts (``_tokens``)."""
    if not isinstance(item, dict) or not any(k in item for k in TOKEN_ARRAYS):
        return item
    item = dict(item)
    tokens: dict[str, Any] = {}
    for key in TOKEN_ARRAYS:
        value = item.pop(key, None)
        if isinstance(value, list):
            tokens[key] = len(value)
            if key == "generation_log_probs" and value:
                numbers = [v for v in value if isinstance(v, int | float) and math.isfinite(v)]
                if numbers:
                    tokens["mean_log_prob"] = sum(numbers) / len(numbers)
    item["_tokens"] = tokens
    return item


def for_display(row: Any) -> Any:
    """A row as the page renders it: token id arrays (long, unreadable) become counts."""
    if not isinstance(row, dict):
        return row
    row = dict(row)
    params = row.get("responses_create_params")
    if isinstance(params, dict) and isinstance(params.get("input"), list):
        row["responses_create_params"] = {**params, "input": [_strip_tokens(m) for m in params["input"]]}
    response = row.get("response")
    if isinstance(response, dict) and isinstance(response.get("output"), list):
        row["response"] = {**response, "output": [_strip_tokens(m) for m in response["output"]]}
    return row


class Viewer:
    """The runs being viewed, and caches of what is costly to recompute (the comparison)."""

    def __init__(self, a: RunIndex, b: RunIndex | None = None):
        self.runs: dict[str, RunIndex] = {"a": a}
        if b is not None:
            self.runs["b"] = b
        self._lock = threading.Lock()
        self._compare_key: tuple[int, int] | None = None
        self._tasks: list[dict[str, Any]] = []
        self._sorted: dict[tuple[str, str | None, bool], list[dict[str, Any]]] = {}

    def run(self, name: str) -> RunIndex:
        run = self.runs.get(name)
        if run is None:
            raise HTTPException(404, f"no run {name!r}: start ng_viewer with +compare_jsonl_fpath=... to compare two runs")
        return run

    def pair(self) -> tuple[RunIndex, RunIndex]:
        return self.run("a"), self.run("b")

    def task_rows(self, env: str | None, sort: str, changed: bool) -> list[dict[str, Any]]:
        a, b = self.pair()
        with self._lock:
            key = (len(a), len(b))
            if key != self._compare_key:
                self._tasks = compare_tasks(a, b)
                self._sorted.clear()
                self._compare_key = key
            rows = self._sorted.get((sort, env, changed))
            if rows is None:
                rows = [r for r in self._tasks if env is None or r["env"] == env]
                if changed:
                    rows = [r for r in rows if r["delta"] is None or abs(r["delta"]) > 1e-12]
                rows = self._sorted[(sort, env, changed)] = sort_tasks(rows, sort)
            return rows


def _run_info(run: RunIndex) -> dict[str, Any]:
    envs = run.env_counts()
    return {
        "path": str(run.path),
        "failures_path": str(run.failures_path) if run.failures_path.is_file() else None,
        "entries": len(run),
        "rollouts": sum(e["rollouts"] for e in envs),
        "failed": sum(e["failed"] for e in envs),
        "environments": sorted(envs, key=lambda e: e["name"]),
        "default_env": run.default_env,
        "index_seconds": round(run.index_seconds, 3),
    }


def create_app(a: RunIndex, b: RunIndex | None = None) -> FastAPI:
    viewer = Viewer(a, b)
    app = FastAPI(title="ng_viewer", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.viewer = viewer
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    @app.get("/api/info")
    def info() -> Response:
        for run in viewer.runs.values():
            run.refresh()
        return _json(
            {
                "runs": {name: _run_info(run) for name, run in viewer.runs.items()},
                "statuses": [{"name": s, "help": STATUS_HELP[s]} for s in STATUSES],
                "page_max": PAGE_MAX,
            }
        )

    def _filter(
        env: str | None = None,
        status: str | None = None,
        task: int | None = None,
        min_reward: float | None = None,
        max_reward: float | None = None,
    ) -> Filter:
        """The filter query parameters shared by the list and the single-rollout routes."""
        if status is not None and status not in STATUSES:
            raise HTTPException(422, f"status must be one of {', '.join(STATUSES)}; got {status!r}")
        return Filter(env=env or None, status=status or None, task=task, min_reward=min_reward, max_reward=max_reward)

    @app.get("/api/rollouts")
    def rollouts(
        run: Literal["a", "b"] = "a",
        selected: Filter = Depends(_filter),
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=PAGE_MAX),
    ) -> Response:
        index = viewer.run(run)
        index.refresh()
        ids = index.select(selected)
        items = []
        for i in ids[offset : offset + limit]:
            summary = index.summary(i)
            items.append({**summary, "preview": preview(index.read(i), failure=summary["source"] == "failures")})
        return _json({"run": run, "total": len(ids), "offset": offset, "limit": limit, "items": items})

    @app.get("/api/rollouts/{row_id}")
    def rollout(row_id: int, run: Literal["a", "b"] = "a", selected: Filter = Depends(_filter)) -> Response:
        index = viewer.run(run)
        if not 0 <= row_id < len(index):
            raise HTTPException(404, f"run {run} has no row {row_id} (it has {len(index)})")
        ids = index.select(selected)
        pos = bisect.bisect_left(ids, row_id)
        in_filter = pos < len(ids) and ids[pos] == row_id
        prev_id = ids[pos - 1] if pos > 0 else None
        next_pos = pos + 1 if in_filter else pos
        next_id = ids[next_pos] if next_pos < len(ids) else None
        return _json(
            {
                "run": run,
                "summary": index.summary(row_id),
                "row": for_display(index.read(row_id)),
                "position": pos if in_filter else None,
                "total": len(ids),
                "prev": prev_id,
                "next": next_id,
            }
        )

    @app.get("/api/rollouts/{row_id}/raw")
    def raw(row_id: int, run: Literal["a", "b"] = "a") -> Response:
        index = viewer.run(run)
        if not 0 <= row_id < len(index):
            raise HTTPException(404, f"run {run} has no row {row_id}")
        return Response(index.read_bytes(row_id), media_type="application/json")

    @app.get("/api/stats")
    def stats(run: Literal["a", "b"] = "a", bins: int = Query(10, ge=1, le=100)) -> Response:
        return _json({"run": run, **viewer.run(run).stats(bins)})

    @app.get("/api/compare")
    def compare() -> Response:
        a_run, b_run = viewer.pair()
        return _json({"a": str(a_run.path), "b": str(b_run.path), "environments": compare_envs(a_run, b_run)})

    @app.get("/api/compare/tasks")
    def compare_task_rows(
        env: str | None = None,
        sort: str = "delta",
        changed: bool = False,
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=PAGE_MAX),
    ) -> Response:
        if sort not in SORTS:
            raise HTTPException(422, f"sort must be one of {', '.join(SORTS)}; got {sort!r}")
        rows = viewer.task_rows(env or None, sort, changed)
        return _json({"total": len(rows), "offset": offset, "limit": limit, "items": rows[offset : offset + limit]})

    return app
