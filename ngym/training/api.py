"""The Python API trainers use: start a deployment from a config dict, send it rows, get rollouts
back as they complete, stop it.

>>> # with deploy(config, policy_base_url="http://127.0.0.1:8000/v1") as d:
>>> #     async for r in d.rollouts(rows):        # completion order
>>> #         print(r.agent, r.reward)
>>> #     results = d.run(rows)                   # the same, synchronously

``config`` is what ``ng_run`` would merge: a dict holding ``config_paths`` and/or server
instances and any overrides. The policy's base URL(s) go in as ``policy_base_url`` (a list is
passed on as a list: spreading episodes over several URLs, each episode pinned to one, is the model
server's job, e.g. ``vllm_model``). Each row is routed by its ``agent_ref.name``.
"""

from __future__ import annotations

import asyncio
import copy
import sys
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from omegaconf import DictConfig, OmegaConf

from ngym.rollout.collect import ROLLOUT_INDEX, TASK_INDEX, Task, run_tasks
from ngym.config.deployment import Deployment, build_deployment
from ngym.config.loader import ParserConfig, load_config
from ngym.data.rows import check_row
from ngym.errors import DeploymentError, InputError, NgymError
from ngym.launch.launcher import Launcher
from ngym.server.client import ServerClient

__all__ = ["RolloutFailed", "RolloutResult", "RunningDeployment", "check_rows", "deploy", "start_deployment"]


class RolloutFailed(NgymError):
    """A rollout failed after its retries (``failure`` holds the typed reason)."""

    def __init__(self, failure: dict[str, Any]) -> None:
        self.failure = failure
        super().__init__(
            f"rollout (task {failure.get(TASK_INDEX)}, rollout {failure.get(ROLLOUT_INDEX)}) of agent "
            f"{failure.get('agent_ref', {}).get('name')!r} failed after {failure.get('attempts')} attempt(s): "
            f"[{failure.get('kind')}] {failure.get('error')}. Pass on_failure='yield' to receive failures as results."
        )


@dataclass(slots=True)
class RolloutResult:
    """One finished rollout: the row as sent, and the agent's result (or why it failed)."""

    row: dict[str, Any]
    agent: str
    result: dict[str, Any] | None = None
    failure: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def reward(self) -> float | None:
        return None if self.result is None else float(self.result["reward"])

    @property
    def key(self) -> tuple[int, int]:
        return int(self.row[TASK_INDEX]), int(self.row[ROLLOUT_INDEX])


def check_rows(rows: Iterable[Mapping[str, Any]], agents: Iterable[str], num_repeats: int = 1) -> list[Task]:
    """Validate rows (:func:`ngym.data.rows.check_row`: a valid ``responses_create_params`` and an
    ``agent_ref.name`` that runs here) and expand them into tasks; raise :class:`InputError` listing every bad row.

    Rows without ``_ng_task_index`` get their position; each is repeated ``num_repeats`` times with
    ``_ng_rollout_index`` 0, 1, ... (a GRPO group)."""
    known = set(agents)
    problems: list[str] = []
    tasks: list[Task] = []
    for position, row in enumerate(rows):
        checked = check_row(row, need_agent=True, agents=known)
        if isinstance(checked, str):
            problems.append(f"row {position}: {checked}")
            continue
        name = checked.agent
        task_index = int(row.get(TASK_INDEX, position))
        first = int(row.get(ROLLOUT_INDEX, 0))
        for r in range(num_repeats):
            tasks.append(Task({**row, TASK_INDEX: task_index, ROLLOUT_INDEX: first + r}, name, position))
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise InputError(f"{len(problems)} bad row(s); nothing was sent:\n  {shown}{more}")
    return tasks


class RunningDeployment:
    """A started deployment (head server + one process per server instance). Stop it with
    :meth:`stop` or use it as a context manager; :meth:`stop` leaves no child process behind."""

    def __init__(self, launcher: Launcher) -> None:
        self.launcher = launcher

    @property
    def deployment(self) -> Deployment:
        return self.launcher.deployment

    @property
    def config(self) -> DictConfig:
        return self.deployment.config

    @property
    def head_url(self) -> str:
        return self.deployment.head.url

    @property
    def urls(self) -> dict[str, str]:
        return {name: spec.url for name, spec in self.deployment.servers.items()}

    @property
    def agents(self) -> list[str]:
        return [spec.name for spec in self.deployment.agents()]

    @property
    def pids(self) -> list[int]:
        return [h.pid for h in self.launcher.handles.values() if h.pid is not None]

    def client(self) -> ServerClient:
        """A client for this deployment's servers (one per event loop; close it with ``aclose``)."""
        return ServerClient.from_config(self.config)

    async def rollouts(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        num_repeats: int = 1,
        concurrency: int = 64,
        max_attempts: int = 3,
        deadline_s: float = 3600.0,
        on_failure: str = "raise",
    ) -> AsyncIterator[RolloutResult]:
        """Run every row through its agent; yield results in completion order.

        ``on_failure``: ``"raise"`` raises :class:`RolloutFailed` at the first failed rollout (after
        its retries); ``"yield"`` yields it with ``failure`` set and ``result`` None."""
        if on_failure not in ("raise", "yield"):
            raise ValueError(f"on_failure must be 'raise' or 'yield', not {on_failure!r}")
        self.launcher.raise_if_died()
        tasks = check_rows(rows, self.agents, num_repeats)
        client = self.client()
        try:
            async for outcome in run_tasks(client, tasks, concurrency, max_attempts, deadline_s):
                result = RolloutResult(outcome.task.row, outcome.task.agent, outcome.result, outcome.failure)
                if result.failure is not None and on_failure == "raise":
                    self.launcher.raise_if_died()
                    raise RolloutFailed(result.failure)
                yield result
        finally:
            await client.aclose()

    async def arun(self, rows: Iterable[Mapping[str, Any]], **options: Any) -> list[RolloutResult]:
        return [r async for r in self.rollouts(rows, **options)]

    def run(self, rows: Iterable[Mapping[str, Any]], **options: Any) -> list[RolloutResult]:
        """:meth:`rollouts`, synchronously: every result, in completion order. Not callable from a
        running event loop (use ``await d.arun(rows)`` there)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.arun(rows, **options))
        raise RuntimeError("RunningDeployment.run() was called inside a running event loop; use `await d.arun(rows)`.")

    def stop(self) -> None:
        self.launcher.stop()

    def __enter__(self) -> RunningDeployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _policy_overrides(
    policy_base_url: str | Sequence[str] | None, policy_model_name: str | None, policy_api_key: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if policy_base_url is not None:
        out["policy_base_url"] = policy_base_url if isinstance(policy_base_url, str) else list(policy_base_url)
    if policy_model_name is not None:
        out["policy_model_name"] = policy_model_name
    if policy_api_key is not None:
        out["policy_api_key"] = policy_api_key
    return out


def start_deployment(
    parser_config: ParserConfig, *, out: IO[str] | None = None, startup_timeout_s: float | None = None
) -> RunningDeployment:
    """Merge the config as ``ng_run`` does (files, env.yaml, the initial dict), start every server
    and wait until all answer."""
    cfg = load_config(parser_config)
    deployment = build_deployment(cfg, parser_config.sources)
    if not deployment.servers:
        raise DeploymentError(
            "The config holds no server instance. Put the YAML files of a model and of each environment in "
            "config_paths, e.g. {'config_paths': ['responses_api_models/.../x.yaml', 'resources_servers/.../y.yaml']}."
        )
    timeout = startup_timeout_s if startup_timeout_s is not None else float(cfg.get("startup_timeout_s", 180))
    placement = None
    if deployment.ray is not None:  # ray / ray_head_node_address ("auto" in a trainer that runs Ray)
        from ngym.launch.ray_placement import RayPlacement

        placement = RayPlacement(deployment, out or sys.stderr)
    launcher = Launcher(deployment, placement=placement, out=out or sys.stderr, startup_timeout_s=timeout)
    launcher.start()
    return RunningDeployment(launcher)


def deploy(
    config: Mapping[str, Any] | DictConfig,
    *,
    policy_base_url: str | Sequence[str] | None = None,
    policy_model_name: str | None = None,
    policy_api_key: str | None = None,
    dotenv_path: str | Path | None = None,
    head_port: int | None = 0,
    out: IO[str] | None = None,
    startup_timeout_s: float | None = None,
) -> RunningDeployment:
    """Start a deployment from a config dict (``config_paths`` + overrides); returns once every
    server answers. ``head_port=0`` (default) picks a free port, so several deployments can run
    side by side; ``None`` keeps the config's (11000 by default). ``env.yaml`` is read only when
    ``dotenv_path`` is given."""
    initial: dict[str, Any] = (
        OmegaConf.to_container(config, resolve=False) if isinstance(config, DictConfig) else copy.deepcopy(dict(config))  # type: ignore[assignment]
    )
    initial.update(_policy_overrides(policy_base_url, policy_model_name, policy_api_key))
    if head_port is not None:
        initial["head_server"] = {**(initial.get("head_server") or {}), "port": head_port}
    parser_config = ParserConfig(
        dotenv_path=dotenv_path,
        initial_global_config_dict=initial,
        skip_load_from_cli=True,
        skip_load_from_dotenv=dotenv_path is None,
    )
    return start_deployment(parser_config, out=out, startup_timeout_s=startup_timeout_s)


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file (blank lines skipped)."""
    import orjson

    with Path(path).open("rb") as f:
        for line in f:
            if line.strip():
                yield orjson.loads(line)

