"""Measure how environment folders written for NeMo Gym run on ngym, as a new user would try them.

For each folder: copy it into ``resources_servers/`` of a temporary copy of this checkout, serve its
resources server(s) with ``ng_run`` (model servers it references are stood in for by an
``openai_model`` instance pointing nowhere: replaying recorded rollouts calls no model), replay its
recorded ``data/example_rollouts.jsonl`` through the real HTTP routes (``/seed_session``, each
recorded tool call, ``/verify`` with the recorded row as is) and compare rewards, then run its own
tests with ``ng_test``.

    python -m ngym.interop.measure <folder>... [--out results.json] [--markdown table.md]

``scripts/fetch_reference_envs.sh`` gets the reference's folders; tests/interop/test_reference_envs.py
runs this on them when they are present.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from ngym.config.paths import PARENT_DIR

BIN = Path(sys.executable).parent


@dataclass(slots=True)
class Result:
    """What one folder did on ngym."""

    name: str
    config: str = ""
    serves: bool = False
    serve_error: str = ""
    rows: int = 0
    reproduced: int = 0
    positive: int = 0  # rows recorded with a reward > 0
    positive_reproduced: int = 0  # of those, reproduced (a zero also "reproduces" when a verifier cannot run)
    mismatches: list[str] = field(default_factory=list)
    tests: str = "not run"  # passed | failed | none | not run
    tests_detail: str = ""
    conformance: str = "not run"  # ngym's conformance check (ng_test's second half): ok, or its problems

    @property
    def blocker(self) -> str:
        if not self.serves:
            return self.serve_error
        if self.reproduced < self.rows:
            return self.mismatches[0] if self.mismatches else ""
        return self.tests_detail if self.tests == "failed" else ""


def copy_checkout(dest: Path) -> Path:
    """The files git tracks in this checkout (no venv, no caches), copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PARENT_DIR, capture_output=True, check=True,
    ).stdout.split(b"\0")
    for rel in filter(None, listed):
        src = PARENT_DIR / rel.decode()
        if src.is_file():
            target = dest / rel.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    return dest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick_config(env_dir: Path) -> Path | None:
    configs = sorted((env_dir / "configs").glob("*.yaml"))
    preferred = [c for c in configs if c.stem == env_dir.name]
    chosen = preferred or configs
    return chosen[0] if chosen else None


def _model_refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        if node.get("type") == "responses_api_models" and isinstance(node.get("name"), str):
            found.add(node["name"])
        for value in node.values():
            _model_refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _model_refs(value, found)


def serve_config(config_path: Path, port: int, recorded: Path | None = None) -> tuple[dict[str, Any], list[str]]:
    """The config ``ng_run`` gets: the folder's resources server instances (first on ``port``) and a
    stand-in model server for every model they reference; and the resources instance names."""
    loaded = yaml.safe_load(config_path.read_text()) or {}
    out: dict[str, Any] = {}
    resources: list[str] = []
    for name, body in loaded.items():
        if isinstance(body, dict) and "resources_servers" in body:
            out[name] = body
            resources.append(name)
    if not resources:
        return out, resources
    ((impl, settings),) = out[resources[0]]["resources_servers"].items()
    out[resources[0]] = {"resources_servers": {impl: {**settings, "host": "127.0.0.1", "port": port}}}
    out["head_server"] = {"host": "127.0.0.1", "port": free_port()}  # beside any other deployment on 11000
    models: set[str] = set()
    _model_refs({k: out[k] for k in resources}, models)
    for model in sorted(models - set(out)):
        if recorded is not None:
            out[model] = {"responses_api_models": {"replay_model": {"entrypoint": "app.py", "recorded": str(recorded)}}}
        else:
            out[model] = {
                "responses_api_models": {
                    "openai_model": {
                        "entrypoint": "app.py",
                        "openai_base_url": "http://127.0.0.1:9/v1",
                        "openai_api_key": "not-used",
                        "openai_model": "not-used",
                    }
                }
            }
    return out, resources


#: the stand-in model server: answers each ``/v1/responses`` call with the response recorded for the
#: same input (a judge's answers are recorded in rows as ``{responses_create_params, response}``)
REPLAY_MODEL_APP = '''"""replay_model (written by ngym.interop.measure): recorded answers for recorded requests."""

import json

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ngym.config.schema import ServerConfig
from ngym.interop.measure import prompt_key
from ngym.server.base import Server


class ReplayModelConfig(ServerConfig):
    recorded: str


class ReplayModel(Server[ReplayModelConfig]):
    config: ReplayModelConfig
    server_type = "responses_api_models"

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        with open(self.config.recorded) as f:
            answers = {key: response for key, response in json.load(f)}

        @app.post("/v1/responses")
        async def responses(body: dict) -> JSONResponse:
            found = answers.get(prompt_key({"responses_create_params": body}))
            if found is None:
                return JSONResponse({"error": "no recorded answer for this request"}, status_code=404)
            return JSONResponse(found)

        return app


if __name__ == "__main__":
    ReplayModel.run_webserver()
'''


def recorded_model_calls(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(request key, response) of every model call recorded inside rows (a judge's, for example)."""
    found: list[tuple[str, Any]] = []

    def walk(node: Any, top: bool) -> None:
        if isinstance(node, dict):
            if not top and isinstance(node.get("responses_create_params"), dict) and isinstance(node.get("response"), dict):
                found.append((prompt_key(node), node["response"]))
            for value in node.values():
                walk(value, False)
        elif isinstance(node, list):
            for value in node:
                walk(value, False)

    for row in rows:
        walk(row, True)
    return found


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> str:
    """"" once ``url`` answers; else why not."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"ng_run exited with code {proc.returncode}"
        try:
            if httpx.get(url, timeout=2, trust_env=False).status_code < 500:
                return ""
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return f"no answer from {url} within {timeout_s:g} s"


def _number(value: Any) -> float | None:
    """A recorded reward (some reference rows record it as a string, ``"1.0"``)."""
    try:
        return float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else None
    except ValueError:
        return None


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return text


def replay_row(http: httpx.Client, base: str, row: dict[str, Any]) -> tuple[float | None, str]:
    """Seed, replay the recorded tool calls, verify the recorded row as is: (reward, problem)."""
    cookies: dict[str, str] = {}
    http.cookies.clear()  # one episode's session cookie must not leak into the next

    def post(path: str, body: Any) -> httpx.Response:
        answer = http.post(base + path, json=body, cookies=cookies)
        cookies.update(dict(answer.cookies))
        return answer

    seeded = post("/seed_session", row)
    if seeded.status_code >= 400:
        return None, f"/seed_session answered {seeded.status_code}: {seeded.text[:300]}"
    for item in (row.get("response") or {}).get("output", []):
        if isinstance(item, dict) and item.get("type") == "function_call":
            post(f"/{item['name']}", _parsed(item.get("arguments", "{}")))
    verified = post("/verify", row)
    if verified.status_code != 200:
        return None, f"/verify answered {verified.status_code}: {verified.text[:300]}"
    reward = verified.json().get("reward")
    return (float(reward) if isinstance(reward, int | float) else None), ""


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    # the reference ships some files of "<PLACEHOLDER ROW>" lines: no recorded rows to replay
    return [json.loads(line) for line in path.read_text().splitlines() if line.lstrip().startswith("{")]


def recorded_rows(env_dir: Path) -> list[dict[str, Any]]:
    """``data/example_rollouts.jsonl``, each row joined with the ``data/example.jsonl`` row of the same
    prompt: the reference's recorded rows drop the task fields their verifiers read (its verify
    response models do not keep them), so the task fields come from the input row; recorded keys win."""
    inputs = {prompt_key(row): row for row in _jsonl(env_dir / "data" / "example.jsonl")}
    recorded = [row for row in _jsonl(env_dir / "data" / "example_rollouts.jsonl") if "response" in row and "reward" in row]
    return [{**inputs.get(prompt_key(row), {}), **row} for row in recorded]


def prompt_key(row: dict[str, Any]) -> str:
    """A row's prompt, as written and as the reference records it (``type: message``, ids and nulls added)."""
    prompt = (row.get("responses_create_params") or {}).get("input")
    if isinstance(prompt, list):
        prompt = [
            {k: v for k, v in item.items() if v is not None and k not in ("id", "status") and (k, v) != ("type", "message")}
            if isinstance(item, dict) else item
            for item in prompt
        ]
    return json.dumps(prompt, sort_keys=True)


_EXCEPTION = re.compile(r"^\s*(?:\(\S+\)\s*)?([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)\b:?.*)$")


def reason(text: str) -> str:
    """The last exception line in a log (``ModuleNotFoundError: No module named 'x'``), else its tail."""
    found = [m.group(1) for line in text.splitlines() if (m := _EXCEPTION.match(line))]
    return found[-1][:400] if found else tail(text)


def tail(text: str, lines: int = 6) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-700:]


def serve_and_replay(result: Result, repo: Path, env_dir: Path, start_timeout_s: float) -> None:
    config = pick_config(env_dir)
    if config is None:
        result.serve_error = "no configs/*.yaml"
        return
    result.config = config.name
    port = free_port()
    rows = recorded_rows(env_dir)
    recorded = repo / f"_measure_{env_dir.name}_model_calls.json"
    recorded.write_text(json.dumps(recorded_model_calls(rows)))
    replay_app = repo / "responses_api_models" / "replay_model" / "app.py"
    replay_app.parent.mkdir(parents=True, exist_ok=True)
    replay_app.write_text(REPLAY_MODEL_APP)
    cfg, resources = serve_config(config, port, recorded)
    if not resources:
        result.serve_error = f"{config.name} declares no resources server"
        return
    cfg_path = repo / f"_measure_{env_dir.name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    log_path = repo / f"_measure_{env_dir.name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(BIN / "ng_run"), f"+config_paths=[{cfg_path}]"],
            cwd=repo, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        problem = wait_healthy(f"http://127.0.0.1:{port}/", proc, start_timeout_s)
        if problem:
            result.serve_error = f"{problem}: {reason(log_path.read_text(errors='replace'))}"
            return
        result.serves = True
        result.rows = len(rows)
        with httpx.Client(timeout=120, trust_env=False) as http:
            for i, row in enumerate(rows):
                try:
                    reward, problem = replay_row(http, f"http://127.0.0.1:{port}", row)
                except httpx.HTTPError as e:
                    reward, problem = None, f"{type(e).__name__}: {e}"
                expected = _number(row.get("reward"))
                positive = expected is not None and expected > 0
                result.positive += positive
                if reward is not None and expected is not None and math.isclose(reward, expected, abs_tol=1e-6):
                    result.reproduced += 1
                    result.positive_reproduced += positive
                elif len(result.mismatches) < 3:
                    result.mismatches.append(problem or f"row {i}: reward {reward} (recorded {expected})")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def run_tests(result: Result, repo: Path, env_dir: Path, timeout_s: float) -> None:
    if not (env_dir / "tests").is_dir():
        result.tests = "none"
        return
    try:
        done = subprocess.run(
            [str(BIN / "ng_test"), f"+entrypoint=resources_servers/{env_dir.name}"],
            cwd=repo, capture_output=True, text=True, timeout=timeout_s, start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        result.tests, result.tests_detail = "failed", f"ng_test ran past {timeout_s:g} s"
        return
    out = done.stdout + done.stderr
    problems = [line.strip()[2:] for line in done.stderr.splitlines() if line.startswith("  - ")]
    own = [p for p in problems if p.startswith(("tests failed", "pytest collected no tests", "no tests"))]
    result.conformance = "; ".join(p for p in problems if p not in own)[:300] or "ok"
    result.tests = "failed" if own or (done.returncode != 0 and not problems) else "passed"
    if result.tests == "failed":
        counts = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
        failed = [line for line in out.splitlines() if line.startswith(("FAILED ", "ERROR "))]
        result.tests_detail = " | ".join([*counts[-1:], *failed[:2], *own])[:600] or reason(out)


def measure(env_dirs: list[Path], *, tests: bool = True, start_timeout_s: float = 90, test_timeout_s: float = 600) -> list[Result]:
    results = []
    with tempfile.TemporaryDirectory(prefix="ngym-measure-") as tmp:
        repo = copy_checkout(Path(tmp) / "ngym")
        for src in env_dirs:
            env_dir = repo / "resources_servers" / src.name
            shutil.rmtree(env_dir, ignore_errors=True)
            shutil.copytree(src, env_dir)
            result = Result(src.name)
            serve_and_replay(result, repo, env_dir, start_timeout_s)
            if tests:
                run_tests(result, repo, env_dir, test_timeout_s)
            print(
                f"{result.name}: serves={result.serves} reproduced={result.reproduced}/{result.rows} "
                f"tests={result.tests} {result.blocker[:200]}",
                file=sys.stderr, flush=True,
            )
            results.append(result)
    return results


def markdown(results: list[Result]) -> str:
    lines = [
        "| environment | serves | own tests | conformance | rewards reproduced (of them > 0) | blocker |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        blocker = r.blocker.replace("|", "\\|").replace("\n", " ")[:220]
        conformance = r.conformance.replace("|", "\\|")[:120]
        reproduced = f"{r.reproduced}/{r.rows} ({r.positive_reproduced}/{r.positive})" if r.rows else "no recorded rows"
        lines.append(f"| {r.name} | {'yes' if r.serves else 'no'} | {r.tests} | {conformance} | {reproduced} | {blocker} |")
    lines.append(
        f"| **total ({len(results)})** | **{sum(r.serves for r in results)}** | **{sum(r.tests == 'passed' for r in results)} "
        f"passed** | **{sum(r.conformance == 'ok' for r in results)} ok** | **{sum(r.reproduced for r in results)}/"
        f"{sum(r.rows for r in results)} ({sum(r.positive_reproduced for r in results)}/{sum(r.positive for r in results)})** | |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ngym.interop.measure", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="environment folders (each with app.py, configs/, data/)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the table as Markdown here")
    parser.add_argument("--no-tests", action="store_true", help="serve and replay only")
    args = parser.parse_args(argv)
    results = measure([f.resolve() for f in args.folders], tests=not args.no_tests)
    table = markdown(results)
    print(table)
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
