"""The reference's trainer-facing names (NeMo Gym v0.2.1, spec §6.6, §12.1), so an existing trainer
integration (NeMo RL's ``NemoGym`` environment) can switch by changing its imports:

    rh = RunHelper()
    rh.start(GlobalConfigDictParserConfig(dotenv_path=..., initial_global_config_dict=..., skip_load_from_cli=True))
    for future in RolloutCollectionHelper().run_examples(rows, head_server_config=BaseServerConfig(host=h, port=p)):
        row, result = await future          # completion order
    rh.shutdown()
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import yaml
from omegaconf import DictConfig, OmegaConf

from ngym.rollout.collect import ROLLOUT_INDEX, TASK_INDEX, Task, run_task
from ngym.config.loader import ParserConfig
from ngym.config.schema import HeadServerConfig
from ngym.errors import DeploymentError, InputError
from ngym.server.auth import TOKEN_ENV, TOKEN_HEADER, current_token
from ngym.server.client import ServerClient
from ngym.training.api import RolloutFailed, RunningDeployment, start_deployment

__all__ = [
    "HEAD_SERVER_KEY_NAME",
    "BaseServerConfig",
    "GlobalConfigDictParserConfig",
    "RolloutCollectionHelper",
    "RunHelper",
]

#: the top-level config key of the head server's address
HEAD_SERVER_KEY_NAME = "head_server"

#: the reference's name for a server address (``host``, ``port``)
BaseServerConfig = HeadServerConfig


@dataclass(slots=True)
class GlobalConfigDictParserConfig(ParserConfig):
    """How to build the global config: ``dotenv_path``, ``initial_global_config_dict``,
    ``skip_load_from_cli``, ``skip_load_from_dotenv``, ``hide_secrets`` (as the reference)."""

    #: the policy keys pre-seeded empty, so configs with a model file parse without credentials
    NO_MODEL_GLOBAL_CONFIG_DICT: ClassVar[dict[str, str]] = {
        "policy_base_url": "",
        "policy_api_key": "",
        "policy_model_name": "",
    }


class RunHelper:
    """Start every server of a config (like ``ng_run``, without its blocking loop) and stop them."""

    def __init__(self) -> None:
        self.deployment: RunningDeployment | None = None

    def start(self, global_config_dict_parser_config: ParserConfig | None = None) -> None:
        pc = global_config_dict_parser_config or GlobalConfigDictParserConfig()
        if self.deployment is not None:
            raise DeploymentError("RunHelper.start() was called twice; call shutdown() first.")
        if pc.dotenv_path is not None and not Path(pc.dotenv_path).is_file():
            # the reference reads env.yaml only if it exists; an absent file is not an error there
            pc = _replace(pc, skip_load_from_dotenv=True)
        if isinstance(pc.initial_global_config_dict, DictConfig):
            pc = _replace(pc, initial_global_config_dict=OmegaConf.to_container(pc.initial_global_config_dict))
        self.deployment = start_deployment(pc, out=sys.stderr)

    @property
    def head_server_config(self) -> HeadServerConfig:
        if self.deployment is None:
            raise DeploymentError("RunHelper is not started; call start(...) first.")
        return self.deployment.deployment.head

    def poll(self) -> None:
        """Raise if a server process has exited."""
        if self.deployment is not None:
            self.deployment.launcher.raise_if_died()

    def shutdown(self) -> None:
        if self.deployment is not None:
            self.deployment.stop()
            self.deployment = None


def _replace(pc: ParserConfig, **changes: Any) -> ParserConfig:
    values = {name: getattr(pc, name) for name in ParserConfig.__dataclass_fields__}
    values.update(changes)
    return type(pc)(**values)


def fetch_config_sync(head: HeadServerConfig, timeout_s: float = 10.0) -> DictConfig:
    """The deployment's global config from its head server (``GET /global_config_dict_yaml``)."""
    token = current_token(head.port)
    if token:
        os.environ.setdefault(TOKEN_ENV, token)
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False, headers={TOKEN_HEADER: token} if token else None) as http:
            answer = http.get(f"{head.url}/global_config_dict_yaml")
            answer.raise_for_status()
    except httpx.HTTPError as e:
        raise DeploymentError(
            f"Could not reach the head server at {head.url} ({type(e).__name__}: {e}). Start the servers first "
            f"(RunHelper().start(...) or ng_run) and pass their head_server_config."
        ) from None
    cfg = OmegaConf.create(yaml.safe_load(json.loads(answer.text)) or {})
    assert isinstance(cfg, DictConfig)
    return cfg


class RolloutCollectionHelper:
    """Send rows to their agents through a running deployment's head server."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, int, int], ServerClient] = {}

    def _client(self, head: HeadServerConfig) -> ServerClient:
        loop = asyncio.get_running_loop()
        key = (head.host, head.port, id(loop))
        client = self._clients.get(key)
        if client is None:
            client = ServerClient.from_config(fetch_config_sync(head))
            self._clients[key] = client
        return client

    def run_examples(
        self,
        examples: Sequence[Mapping[str, Any]],
        head_server_config: HeadServerConfig | None = None,
        semaphore: asyncio.Semaphore | None = None,
    ) -> Iterator[Awaitable[tuple[dict[str, Any], dict[str, Any]]]]:
        """One awaitable per row, yielded in completion order; each gives ``(row, result)``.

        Call inside a running event loop. Every row must carry ``agent_ref.name``; a failed
        rollout (after retries) raises :class:`RolloutFailed` from its awaitable."""
        head = head_server_config or HeadServerConfig()
        client = self._client(head)
        problems = [
            f"row {i}: no agent_ref.name"
            for i, row in enumerate(examples)
            if not isinstance(row.get("agent_ref"), Mapping) or not isinstance(row["agent_ref"].get("name"), str)
        ]
        if problems:
            raise InputError("Rows must already carry agent_ref (ng_prepare_data stamps it): " + "; ".join(problems[:20]))

        async def one(position: int, row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            sent = {**row, TASK_INDEX: row.get(TASK_INDEX, position), ROLLOUT_INDEX: row.get(ROLLOUT_INDEX, 0)}
            task = Task(sent, str(row["agent_ref"]["name"]), position)
            if semaphore is not None:
                async with semaphore:
                    outcome = await run_task(client, task)
            else:
                outcome = await run_task(client, task)
            if outcome.result is None:
                assert outcome.failure is not None
                raise RolloutFailed(outcome.failure)
            return dict(row), outcome.result

        return iter(asyncio.as_completed([one(i, row) for i, row in enumerate(examples)]))

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
