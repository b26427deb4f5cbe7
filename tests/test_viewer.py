"""ng_viewer: the index (offsets + summaries, one pass), its JSON API in-process (list, filters,
paging, one rollout, histograms and pass@k, comparison), a 100k-row file, the command as a user
runs it, and the page itself in headless Chromium (marked slow; screenshots saved)."""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ngym.viewer.app import create_app
from ngym.viewer.index import Filter, RunIndex, default_env_for, pass_at_k

REPO = Path(__file__).resolve().parents[1]
# shared/ lies beside the checkout (as in tests/fakes.py), or inside it
REFERENCE = next(
    (p for p in (REPO.parent / "shared" / "compat" / "reference-v0.2.1", REPO / "shared" / "compat" / "reference-v0.2.1") if p.is_dir()),
    REPO.parent / "shared" / "compat" / "reference-v0.2.1",
)

ENVS = {"weather_simple_agent": "get_weather", "math_simple_agent": "calculator"}


# ------------------------------------------------------------------------------------ test data


def reward_of(env: str, task: int, rep: int, variant: int = 0) -> float:
    """Deterministic rewards: weather is 0/1, math has partial credit; variant 1 is another run."""
    if env == "weather_simple_agent":
        return 0.0 if (task + rep + variant) % 3 == 0 else 1.0
    return ((task * 7 + rep * 3 + variant * task) % 5) / 4


def make_row(env: str, task: int, rep: int, reward: float, tokens: bool = False) -> dict[str, Any]:
    tool = ENVS.get(env, "lookup")
    call_id = f"call_{task}_{rep}"
    args = {"city": f"City{task}"} if tool == "get_weather" else {"expression": f"{task} * {rep + 2}"}
    output: list[dict[str, Any]] = [
        {"type": "reasoning", "id": f"rs_{task}", "summary": [{"type": "summary_text", "text": f"I will call {tool} for task {task}."}]},
        {"type": "function_call", "name": tool, "arguments": json.dumps(args), "call_id": call_id, "status": "completed"},
        {"type": "function_call_output", "call_id": call_id, "output": json.dumps({"result": f"answer {task}"})},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": f"The answer to task {task} is {task * 2}."}]},
    ]
    if tokens:
        for item in (output[1], output[3]):
            item["prompt_token_ids"] = list(range(30 + task % 7))
            item["generation_token_ids"] = list(range(5 + rep))
            item["generation_log_probs"] = [-0.5] * (5 + rep)
    return {
        "responses_create_params": {
            "input": [
                {"role": "system", "content": "You are a helpful agent. Use the tools."},
                {"role": "user", "content": f"Task {task}: please solve problem number {task} of {env}."},
            ],
            "tools": [{"type": "function", "name": tool, "description": f"The {tool} tool", "parameters": {"type": "object"}, "strict": True}],
            "temperature": 1.0,
        },
        "response": {"id": f"resp_{task}_{rep}", "output": output, "usage": {"input_tokens": 100 + task, "output_tokens": 20 + rep, "total_tokens": 120 + task + rep}},
        "reward": reward,
        "agent_ref": {"name": env},
        "_ng_task_index": task,
        "_ng_rollout_index": rep,
        "accuracy": reward >= 1,
        "latency_s": 0.5,
    }


def write_run(path: Path, tasks: int = 60, repeats: int = 4, variant: int = 0, failures: int = 0, tokens: bool = True) -> list[dict[str, Any]]:
    """A run of both environments (tasks interleaved like a collection's completion order)."""
    rows = []
    for task in range(tasks):
        env = list(ENVS)[task % 2]
        for rep in range(repeats):
            rows.append(make_row(env, task, rep, reward_of(env, task, rep, variant), tokens=tokens))
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    if failures:
        fails = [
            {"_ng_task_index": tasks + i, "_ng_rollout_index": 0, "agent_ref": {"name": "weather_simple_agent"}, "input_line": i + 1,
             "attempts": 3, "kind": "timeout", "error": f"ReadTimeout: no answer {i}", "retryable": True}
            for i in range(failures)
        ]
        path.with_name(path.stem + "_failures.jsonl").write_bytes(b"".join(orjson.dumps(f) + b"\n" for f in fails))
    return rows


def status(reward: float) -> str:
    return "pass" if reward >= 1 else "zero" if reward <= 0 else "partial"


@pytest.fixture()
def run_a(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path / "run_a.jsonl"
    return path, write_run(path, failures=5)


@pytest.fixture()
def run_b(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path / "run_b.jsonl"
    return path, write_run(path, tasks=64, variant=1, tokens=False)


def client(a: Path, b: Path | None = None) -> httpx.AsyncClient:
    app = create_app(RunIndex(a), RunIndex(b) if b else None)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://viewer")


# ------------------------------------------------------------------------------------ index + API


def test_pass_at_k_matches_enumeration() -> None:
    for n, c, k in itertools.product(range(1, 7), range(0, 7), range(1, 7)):
        if c > n or k > n:
            continue
        outcomes = [1] * c + [0] * (n - c)
        subsets = list(itertools.combinations(outcomes, k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / len(subsets))


@pytest.mark.anyio
async def test_list_filters_and_paging(run_a: tuple[Path, list[dict[str, Any]]]) -> None:
    path, rows = run_a
    async with client(path) as c:
        info = (await c.get("/api/info")).json()
        a = info["runs"]["a"]
        assert (a["rollouts"], a["failed"], a["entries"]) == (240, 5, 245)
        assert {e["name"]: (e["rollouts"], e["failed"]) for e in a["environments"]} == {
            "math_simple_agent": (120, 0), "weather_simple_agent": (120, 5)}
        assert [s["name"] for s in info["statuses"]] == ["pass", "partial", "zero", "failed", "unscored", "bad"]

        first = (await c.get("/api/rollouts")).json()
        assert first["total"] == 245 and len(first["items"]) == 50
        assert [r["id"] for r in first["items"]] == list(range(50))
        item = first["items"][0]
        assert item["env"] == rows[0]["agent_ref"]["name"] and item["task"] == 0 and item["rollout"] == 0
        assert item["reward"] == rows[0]["reward"] and item["tool_calls"] == 1 and item["tokens"] == 120
        assert item["preview"]["tools"] == ["get_weather"]
        assert item["preview"]["text"].startswith("Task 0: please solve")
        assert item["preview"]["answer"] == "The answer to task 0 is 0."

        seen = []
        for offset in range(0, 245, 50):
            page = (await c.get("/api/rollouts", params={"offset": offset, "limit": 50})).json()
            seen += [r["id"] for r in page["items"]]
        assert seen == list(range(245))  # every entry once, the failures last
        last = (await c.get("/api/rollouts", params={"offset": 240})).json()["items"]
        assert [r["status"] for r in last] == ["failed"] * 5
        assert last[0]["preview"]["text"].startswith("timeout: ReadTimeout")

        for env in ENVS:
            got = (await c.get("/api/rollouts", params={"env": env, "limit": 500})).json()
            want = [i for i, r in enumerate(rows) if r["agent_ref"]["name"] == env]
            assert [r["id"] for r in got["items"]][: len(want)] == want
        for st in ("pass", "partial", "zero"):
            got = (await c.get("/api/rollouts", params={"status": st, "limit": 500})).json()
            assert got["total"] == sum(status(r["reward"]) == st for r in rows)
            assert all(r["status"] == st for r in got["items"])
        assert (await c.get("/api/rollouts", params={"status": "failed"})).json()["total"] == 5
        both = (await c.get("/api/rollouts", params={"env": "math_simple_agent", "status": "partial"})).json()
        assert both["total"] == sum(r["agent_ref"]["name"] == "math_simple_agent" and status(r["reward"]) == "partial" for r in rows)
        task = (await c.get("/api/rollouts", params={"task": 7})).json()
        assert [r["rollout"] for r in task["items"]] == [0, 1, 2, 3]
        band = (await c.get("/api/rollouts", params={"min_reward": 0.25, "max_reward": 0.5, "limit": 500})).json()
        assert band["total"] == sum(0.25 <= r["reward"] <= 0.5 for r in rows)

        assert (await c.get("/api/rollouts", params={"status": "great"})).status_code == 422
        assert (await c.get("/api/rollouts", params={"limit": 501})).status_code == 422
        assert (await c.get("/api/rollouts", params={"run": "b"})).status_code == 404
        empty = (await c.get("/api/rollouts", params={"env": "nope"})).json()
        assert empty["total"] == 0 and empty["items"] == []


@pytest.mark.anyio
async def test_one_rollout(run_a: tuple[Path, list[dict[str, Any]]]) -> None:
    path, rows = run_a
    async with client(path) as c:
        got = (await c.get("/api/rollouts/9")).json()
        assert got["summary"]["id"] == 9 and got["row"]["reward"] == rows[9]["reward"]
        output = got["row"]["response"]["output"]
        assert [o["type"] for o in output] == ["reasoning", "function_call", "function_call_output", "message"]
        call = output[1]
        assert call["name"] == rows[9]["response"]["output"][1]["name"] and json.loads(call["arguments"])
        assert "prompt_token_ids" not in call and call["_tokens"]["prompt_token_ids"] == 30 + 2 % 7
        assert call["_tokens"]["generation_token_ids"] == 6 and call["_tokens"]["mean_log_prob"] == pytest.approx(-0.5)
        assert got["row"]["responses_create_params"]["input"][1]["content"].startswith("Task 2:")
        assert (got["prev"], got["next"], got["position"], got["total"]) == (8, 10, 9, 245)

        # prev/next stay inside the filter
        flt = {"env": "math_simple_agent", "status": "pass"}
        ids = [r["id"] for r in (await c.get("/api/rollouts", params={**flt, "limit": 500})).json()["items"]]
        mid = (await c.get(f"/api/rollouts/{ids[3]}", params=flt)).json()
        assert (mid["prev"], mid["next"], mid["position"], mid["total"]) == (ids[2], ids[4], 3, len(ids))
        outside = (await c.get("/api/rollouts/0", params=flt)).json()  # row 0 is weather
        assert outside["position"] is None and outside["next"] == ids[0]

        raw = await c.get("/api/rollouts/9/raw")
        assert raw.content == path.read_bytes().splitlines()[9]
        failure = (await c.get("/api/rollouts/244")).json()
        assert failure["summary"]["status"] == "failed" and failure["row"]["kind"] == "timeout"
        assert (await c.get("/api/rollouts/245")).status_code == 404


@pytest.mark.anyio
async def test_stats_histogram_and_pass_at_k(run_a: tuple[Path, list[dict[str, Any]]]) -> None:
    path, rows = run_a
    async with client(path) as c:
        stats = (await c.get("/api/stats", params={"bins": 4})).json()
    assert stats["range"] == [0.0, 1.0] and stats["bins"] == 4
    envs = {e["env"]: e for e in stats["environments"]}
    assert set(envs) == set(ENVS)
    for env, e in envs.items():
        rewards = [r["reward"] for r in rows if r["agent_ref"]["name"] == env]
        assert e["n"] == len(rewards) == 120 and e["tasks"] == 30
        assert e["mean"] == pytest.approx(sum(rewards) / len(rewards))
        assert sum(e["histogram"]["counts"]) == 120 and len(e["histogram"]["edges"]) == 5
        # bins [0,.25) [.25,.5) [.5,.75) [.75,1]
        want = [0, 0, 0, 0]
        for r in rewards:
            want[min(int(r / 0.25), 3)] += 1
        assert e["histogram"]["counts"] == want
        assert [p["k"] for p in e["pass_at_k"]] == [1, 2, 4]
        groups: dict[int, list[float]] = defaultdict(list)
        for r in rows:
            if r["agent_ref"]["name"] == env:
                groups[r["_ng_task_index"]].append(r["reward"])
        for p in e["pass_at_k"]:
            expect = sum(pass_at_k(len(g), sum(x >= 1 for x in g), p["k"]) for g in groups.values()) / len(groups)
            assert p["value"] == pytest.approx(expect) and p["tasks"] == 30
        assert e["pass_at_k"][0]["value"] == pytest.approx(e["pass_rate"])
        assert e["metrics"]["latency_s"] == pytest.approx(0.5)
        assert e["metrics"]["accuracy"] == pytest.approx(e["pass_rate"])
    assert envs["weather_simple_agent"]["failed"] == 5 and envs["math_simple_agent"]["failed"] == 0
    assert stats["all"]["n"] == 240 and stats["all"]["failed"] == 5 and stats["all"]["tasks"] == 60


@pytest.mark.anyio
async def test_compare_two_runs(run_a: tuple[Path, list[dict[str, Any]]], run_b: tuple[Path, list[dict[str, Any]]]) -> None:
    (pa, rows_a), (pb, rows_b) = run_a, run_b
    async with client(pa) as c:
        assert (await c.get("/api/compare")).status_code == 404
    async with client(pa, pb) as c:
        info = (await c.get("/api/info")).json()
        assert info["runs"]["b"]["rollouts"] == 256
        envs = {r["env"]: r for r in (await c.get("/api/compare")).json()["environments"]}
        for env in ENVS:
            ma = [r["reward"] for r in rows_a if r["agent_ref"]["name"] == env]
            mb = [r["reward"] for r in rows_b if r["agent_ref"]["name"] == env]
            e = envs[env]
            assert e["a"]["mean"] == pytest.approx(sum(ma) / len(ma)) and e["b"]["mean"] == pytest.approx(sum(mb) / len(mb))
            assert e["delta_mean"] == pytest.approx(sum(mb) / len(mb) - sum(ma) / len(ma))
            assert e["b"]["pass_rate"] == pytest.approx(sum(x >= 1 for x in mb) / len(mb))
        total = envs["__all__"]
        assert total["a"]["n"] == 240 and total["b"]["n"] == 256 and total["shared_only"] is False
        all_a = [r["reward"] for r in rows_a]
        mean_a = sum(all_a) / len(all_a)
        assert total["a"]["mean"] == pytest.approx(mean_a)
        assert total["a"]["std"] == pytest.approx(math.sqrt(sum((x - mean_a) ** 2 for x in all_a) / len(all_a)))
        assert total["a"]["pass_rate"] == pytest.approx(sum(x >= 1 for x in all_a) / len(all_a))

        tasks = (await c.get("/api/compare/tasks", params={"limit": 500})).json()
        assert tasks["total"] == 64  # 60 tasks in both, 4 only in B
        items = tasks["items"]
        deltas = [t["delta"] for t in items if t["delta"] is not None]
        assert [abs(d) for d in deltas] == sorted((abs(d) for d in deltas), reverse=True)
        assert [t["task"] for t in items[-4:]] == [61, 63, 60, 62]
        t7 = next(t for t in items if t["task"] == 7)
        assert t7["mean_a"] == pytest.approx(sum(reward_of(t7["env"], 7, r) for r in range(4)) / 4)
        assert t7["mean_b"] == pytest.approx(sum(reward_of(t7["env"], 7, r, 1) for r in range(4)) / 4)
        worse = (await c.get("/api/compare/tasks", params={"sort": "worse", "env": "weather_simple_agent", "changed": "true", "limit": 10})).json()
        assert all(t["env"] == "weather_simple_agent" for t in worse["items"])
        assert all(t["delta"] is None or t["delta"] != 0 for t in worse["items"])
        ds = [t["delta"] for t in worse["items"] if t["delta"] is not None]
        assert ds == sorted(ds)
        page2 = (await c.get("/api/compare/tasks", params={"sort": "task", "offset": 50, "limit": 50})).json()
        assert len(page2["items"]) == 14
        assert (await c.get("/api/compare/tasks", params={"sort": "nope"})).status_code == 422
        b_rows = (await c.get("/api/rollouts", params={"run": "b", "task": 63})).json()
        assert b_rows["total"] == 4 and all(r["task"] == 63 for r in b_rows["items"])

    # an environment in B only is listed but left out of the overall row
    with pb.open("ab") as f:
        f.write(b"".join(orjson.dumps(make_row("extra_simple_agent", 100 + t, 0, 0.0)) + b"\n" for t in range(10)))
    async with client(pa, pb) as c:
        envs2 = {r["env"]: r for r in (await c.get("/api/compare")).json()["environments"]}
        assert envs2["extra_simple_agent"]["a"] is None and envs2["extra_simple_agent"]["b"]["n"] == 10
        assert envs2["__all__"]["shared_only"] is True and envs2["__all__"]["environments"] == 2
        assert envs2["__all__"]["b"]["n"] == 256 and envs2["__all__"]["delta_mean"] == pytest.approx(total["delta_mean"])


@pytest.mark.anyio
async def test_page_and_static_files(run_a: tuple[Path, list[dict[str, Any]]]) -> None:
    async with client(run_a[0]) as c:
        page = await c.get("/")
        assert page.status_code == 200 and '<script src="/static/app.js">' in page.text
        for name in ("app.js", "style.css"):
            assert (await c.get(f"/static/{name}")).status_code == 200
        for name in ("/", "/static/app.js", "/static/style.css"):  # nothing is fetched from the internet
            assert "http" not in re.sub(r"http://www\.w3\.org/2000/svg", "", (await c.get(name)).text)


def test_growing_file_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    rows = [make_row("weather_simple_agent", t, 0, 1.0) for t in range(3)]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows) + b"{not json}\n\n")
    run = RunIndex(path)
    assert len(run) == 4 and run.summary(3)["status"] == "bad" and run.read(3) is None
    half = orjson.dumps(make_row("weather_simple_agent", 9, 0, 0.0))
    with path.open("ab") as f:
        f.write(half[:40])  # a collection mid-write
    assert run.refresh() == 0 and len(run) == 4
    with path.open("ab") as f:
        f.write(half[40:] + b"\n")
    assert run.refresh() == 1 and run.summary(4)["task"] == 9 and run.read(4)["_ng_task_index"] == 9
    assert run.select(Filter(status="zero")).tolist() == [4]


def test_reference_rollouts_without_agent_ref() -> None:
    path = REFERENCE / "example_multi_step" / "example_rollouts.jsonl"
    if not path.is_file():
        pytest.skip(f"reference files not present at {REFERENCE}")
    assert default_env_for(path) == "example_multi_step"
    assert default_env_for(Path("/x/results/out.jsonl")) == "?"
    run = RunIndex(path)
    n = len(path.read_bytes().splitlines())
    assert len(run) == n and run.envs == ["example_multi_step"]
    s = run.summary(0)
    assert s["task"] is None and s["tool_calls"] > 0 and s["reward"] is not None
    stats = run.stats()
    assert stats["all"]["n"] == n and stats["all"]["tasks"] == n  # no task index: each row its own task


def test_100k_rows_index(tmp_path: Path) -> None:
    """A 100k-row file is indexed in one pass; any page and filter is answered from the index."""
    path = tmp_path / "big.jsonl"
    n = 100_000
    templates = {env: make_row(env, 0, 0, 0.0) for env in ENVS}
    with path.open("wb") as f:
        for i in range(n):
            env = "weather_simple_agent" if (i // 8) % 2 else "math_simple_agent"
            row = templates[env]
            row["_ng_task_index"], row["_ng_rollout_index"], row["reward"] = i // 8, i % 8, (i % 5) / 4
            f.write(orjson.dumps(row) + b"\n")
    run = RunIndex(path)
    assert len(run) == n and sorted(run.envs) == sorted(ENVS)
    app = create_app(run)

    async def queries() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://viewer") as c:
            last = (await c.get("/api/rollouts", params={"offset": n - 10})).json()
            assert last["total"] == n and [r["id"] for r in last["items"]] == list(range(n - 10, n))
            assert last["items"][-1]["task"] == (n - 1) // 8
            row = (await c.get(f"/api/rollouts/{n - 1}")).json()
            assert row["row"]["_ng_rollout_index"] == 7
            passed = (await c.get("/api/rollouts", params={"status": "pass", "env": "math_simple_agent"})).json()
            assert passed["total"] == n // 10
            stats = (await c.get("/api/stats")).json()
            assert stats["all"]["n"] == n and stats["all"]["tasks"] == n // 8
            assert [p["k"] for p in stats["all"]["pass_at_k"]] == [1, 2, 4, 8]

    import anyio

    anyio.run(queries)


# ------------------------------------------------------------------------------------ the command


def _viewer_argv(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "ng_viewer"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-c", "import sys; sys.argv[0] = 'ng_viewer'; from ngym.cli.viewer import main; main()", *args]


class ViewerProcess:
    def __init__(self, *args: str, cwd: Path):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(_viewer_argv(*args), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError("ng_viewer exited: " + "".join(self.lines))
            self.lines.append(line)
            m = re.search(r"open (http://\S+/)", line)
            if m:
                self.url = m.group(1)
                return
        raise AssertionError("ng_viewer printed no URL: " + "".join(self.lines))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_command_prints_url_and_serves(run_a: tuple[Path, list[dict[str, Any]]], run_b: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    help_text = subprocess.run(_viewer_argv("+help=true"), capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "+jsonl_fpath" in help_text.stdout and "+compare_jsonl_fpath" in help_text.stdout
    missing = subprocess.run(_viewer_argv("+jsonl_fpath=nope.jsonl"), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    viewer = ViewerProcess(f"+jsonl_fpath={run_a[0].name}", f"+compare_jsonl_fpath={run_b[0]}", "+port=0", cwd=tmp_path)
    try:
        assert viewer.url.startswith("http://127.0.0.1:")
        assert any("240 rollouts, 5 failed" in line for line in viewer.lines)
        info = httpx.get(viewer.url + "api/info", timeout=10, trust_env=False).json()
        assert info["runs"]["a"]["rollouts"] == 240 and info["runs"]["b"]["rollouts"] == 256
    finally:
        viewer.stop()


# ------------------------------------------------------------------------------------ the page, in Chromium


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.mark.slow
def test_page_in_headless_chromium(run_a: tuple[Path, list[dict[str, Any]]], run_b: tuple[Path, list[dict[str, Any]]], tmp_path: Path) -> None:
    found = _chromium()
    if found is None:
        pytest.skip("chromium/chromedriver not installed (apt-get install -y chromium chromium-driver; scripts/setup.sh does it as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    shots = Path(os.environ.get("NGYM_VIEWER_SCREENSHOTS") or tempfile.mkdtemp(prefix="ngym-viewer-shots-"))
    shots.mkdir(parents=True, exist_ok=True)
    (pa, rows_a), (pb, _) = run_a, run_b
    viewer = ViewerProcess(f"+jsonl_fpath={pa}", f"+compare_jsonl_fpath={pb}", "+port=0", cwd=tmp_path)
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=found[1]), options=options)
    try:
        def ready(hash_prefix: str) -> None:
            WebDriverWait(driver, 20).until(lambda d: (d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") or "").startswith(hash_prefix))
            errors = driver.find_elements(By.CSS_SELECTOR, "p.error")
            assert not errors, errors[0].text

        driver.get(viewer.url + "#/list")
        ready("#/list")
        body = driver.find_elements(By.CSS_SELECTOR, "table.rollouts tbody tr.row")
        assert len(body) == 50
        assert "1–50 of 245" in driver.find_element(By.CSS_SELECTOR, ".pager .range").text
        driver.save_screenshot(str(shots / "list.png"))

        # filter to one environment's passing rollouts with the form's select elements
        from selenium.webdriver.support.ui import Select

        Select(driver.find_element(By.NAME, "env")).select_by_value("math_simple_agent")
        ready("#/list?")
        Select(driver.find_element(By.NAME, "status")).select_by_value("pass")
        WebDriverWait(driver, 20).until(lambda d: "status=pass" in (d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") or ""))
        want = sum(r["agent_ref"]["name"] == "math_simple_agent" and r["reward"] >= 1 for r in rows_a)
        assert f"{want} of 245 entries match" in driver.find_element(By.CSS_SELECTOR, "p.count").text
        rows = driver.find_elements(By.CSS_SELECTOR, "table.rollouts tbody tr.row")
        assert rows and all("math_simple_agent" in r.text for r in rows)
        first_id = int(rows[0].get_attribute("data-id"))

        # open one rollout: the conversation shows the tool call with its arguments, its output, the reward
        rows[0].click()
        ready(f"#/rollout/a/{first_id}")
        row = rows_a[first_id]
        calls = driver.find_elements(By.CSS_SELECTOR, ".msg.call")
        assert len(calls) == 1 and "calculator" in calls[0].text and '"expression"' in calls[0].text
        assert "tool output of calculator" in driver.find_element(By.CSS_SELECTOR, ".msg.result").text
        assert driver.find_element(By.CSS_SELECTOR, ".rhead .reward").text == "1"  # fmt(1.0)
        assert row["reward"] == 1.0
        assert "generated" in driver.find_element(By.CSS_SELECTOR, ".msg.call .tokens").text
        assert "I will call calculator" in driver.find_element(By.CSS_SELECTOR, ".msg.reasoning").text
        assert f"The answer to task {row['_ng_task_index']}" in driver.find_element(By.CSS_SELECTOR, ".msg.role-assistant").text
        assert "total_tokens" in driver.find_element(By.CSS_SELECTOR, ".usage").text
        driver.save_screenshot(str(shots / "rollout.png"))
        from selenium.webdriver.common.keys import Keys

        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)  # the next rollout of the filter
        WebDriverWait(driver, 20).until(
            lambda d: (d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") or f"#/rollout/a/{first_id}?").startswith("#/rollout/a/")
            and not d.find_element(By.TAG_NAME, "body").get_attribute("data-ready").startswith(f"#/rollout/a/{first_id}?"))
        assert "2 of" in driver.find_element(By.CSS_SELECTOR, ".rnav").text
        assert "calculator" in driver.find_element(By.CSS_SELECTOR, ".msg.call").text
        driver.find_element(By.CSS_SELECTOR, ".rnav a.back").click()
        ready("#/list")
        assert len(driver.find_elements(By.CSS_SELECTOR, "table.rollouts tbody tr.row")) == min(want, 50)

        # statistics: one histogram per environment and one for all
        driver.get(viewer.url + "#/stats")
        ready("#/stats")
        hists = driver.find_elements(By.CSS_SELECTOR, "svg.hist")
        assert len(hists) == 3 and hists[0].find_elements(By.CSS_SELECTOR, "rect.bar")
        assert "pass@4" in driver.find_element(By.CSS_SELECTOR, "table.stats").text
        driver.save_screenshot(str(shots / "stats.png"))

        # comparison
        driver.get(viewer.url + "#/compare")
        ready("#/compare")
        compare = driver.find_element(By.CSS_SELECTOR, "table.compare").text
        assert "weather_simple_agent" in compare and "all environments" in compare
        assert len(driver.find_elements(By.CSS_SELECTOR, "table.tasks tbody tr")) == 50
        assert driver.find_elements(By.CSS_SELECTOR, "svg.cmpbars rect.bar-b")
        driver.save_screenshot(str(shots / "compare.png"))
        print(f"screenshots in {shots}")
        for name in ("list", "rollout", "stats", "compare"):
            assert (shots / f"{name}.png").stat().st_size > 10_000
    finally:
        driver.quit()
        viewer.stop()
