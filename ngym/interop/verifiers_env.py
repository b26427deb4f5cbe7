"""A verifiers (Prime Intellect, ``verifiers>=0.4``, the ``verifiers.v1`` stack) taskset as an ngym
resources server: its tasks are the rows, its ``@vf.reward`` / ``@vf.metric`` methods the reward.

The server loads the taskset named in its config (``taskset: "package.module:attribute"``, an
instance, a ``Taskset`` class or a function returning one; ``taskset_config`` is passed to the
class). ``python -m ngym.interop.verifiers_env rows package.module:attribute`` writes one row per
task: the task's system prompt and prompt as the model's input, ``vf_task_idx`` and ``vf_task_key``
naming the task. ``/verify`` builds a verifiers ``Trace`` from the row's prompt and the episode's
output (assistant messages, tool calls, tool results, in order), runs ``Task.score(trace)`` and
answers the weighted sum of the rewards (``trace.reward``), each reward and metric beside it.

Refused when the server starts (:class:`UnsupportedTaskset`, naming the task and the function):
rewards, metrics or judges that need a ``runtime`` (a sandbox the rollout ran in: ngym has none,
and verifiers would silently skip them — a wrong reward) and tasks with ``Toolset``s (MCP tools
served by verifiers' harness). A row whose task changed since the rows were written is a
``bad_input``.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from typing import Any

from fastapi import FastAPI
from pydantic import Field

from ngym.env.resources import ResourcesServer, ResourcesServerConfig
from ngym.errors import FailureKind, InputError, RolloutError
from ngym.wire.responses import FunctionCall, FunctionCallOutput, Item, Message, Response
from ngym.wire.rows import VerifyRequest, VerifyResponse


class UnsupportedTaskset(InputError):
    """A taskset whose scoring or tools ngym cannot reproduce."""


def _vf() -> Any:
    try:
        import verifiers.v1 as vf
    except ImportError:
        raise UnsupportedTaskset("verifiers is not installed: pip install 'verifiers>=0.4' (see docs/interop.md)") from None
    return vf


def load_taskset(spec: str, config: dict[str, Any] | None = None) -> Any:
    """``package.module:attribute`` → a verifiers ``Taskset``."""
    vf = _vf()
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise UnsupportedTaskset(f"taskset {spec!r}: write 'package.module:attribute' (a Taskset, its class or a function)")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as e:
        raise UnsupportedTaskset(f"taskset {spec!r} cannot be imported: {type(e).__name__}: {e}") from None
    if isinstance(found, type) and issubclass(found, vf.Taskset):
        from verifiers.v1.utils.generic import concrete_type

        config_cls = concrete_type(found, vf.TasksetConfig) or vf.TasksetConfig  # the class's own config type
        return found(config_cls(**(config or {})))
    if callable(found) and not isinstance(found, vf.Taskset):
        found = found(**(config or {}))
    if not isinstance(found, vf.Taskset):
        raise UnsupportedTaskset(f"taskset {spec!r} is a {type(found).__name__}, not a verifiers Taskset")
    return found


def _needs_runtime(fn: Any) -> bool:
    param = inspect.signature(fn).parameters.get("runtime")
    return param is not None and param.default is inspect.Parameter.empty


def check_task(task: Any) -> None:
    """Refuse what ngym cannot score or serve as verifiers would."""
    name = type(task).__name__
    for kind in ("reward", "metric"):
        for fn in task.hooks(kind):
            if _needs_runtime(fn):
                raise UnsupportedTaskset(
                    f"{name}.{fn.__name__} (a {kind}) needs the runtime the rollout ran in (a sandbox); ngym episodes "
                    f"have none, and verifiers would skip it silently. Score from the trace only, or run it in verifiers."
                )
    for judge in task.plugged_judges():
        if _needs_runtime(judge.score):
            raise UnsupportedTaskset(f"{name}: judge {judge.reward_name!r} needs a runtime (a sandbox); ngym has none")
    if type(task).toolsets(task.config):
        raise UnsupportedTaskset(
            f"{name} has MCP toolsets; verifiers serves those through its harness. Serve the tools as an ngym "
            f"environment (resources_servers/mcp_tools) or run the task in verifiers."
        )


def prompt_items(task: Any) -> list[dict[str, Any]]:
    """The task's system prompt and prompt as Responses input items."""
    data = task.data
    items: list[dict[str, Any]] = []
    if data.system_prompt:
        items.append({"role": "system", "content": data.system_prompt})
    if isinstance(data.prompt, str):
        items.append({"role": "user", "content": data.prompt})
    elif data.prompt:
        for message in data.prompt:
            dumped = message.model_dump() if hasattr(message, "model_dump") else dict(message)
            items.append({"role": dumped["role"], "content": dumped.get("content") or ""})
    return items


def build_trace(task: Any, request_input: str | list[Item], response: Response) -> Any:
    """A verifiers ``Trace`` of one ngym episode: the prompt, then every output item in order."""
    vf = _vf()
    from verifiers.v1.configs.agent import AgentConfig
    from verifiers.v1.graph import MessageNode
    from verifiers.v1.trace import AgentInfo, TraceTask
    from verifiers.v1.types import AssistantMessage, SystemMessage, ToolCall, ToolMessage, UserMessage

    messages: list[tuple[Any, bool]] = []
    prompt = [Message(role="user", content=request_input)] if isinstance(request_input, str) else request_input
    for item in prompt:
        if isinstance(item, Message):
            cls = {"system": SystemMessage, "developer": SystemMessage, "user": UserMessage}.get(item.role, AssistantMessage)
            messages.append((cls(content=item.text()), False))
    pending_calls: list[Any] = []
    for item in response.output:
        if isinstance(item, FunctionCall):
            pending_calls.append(ToolCall(id=item.call_id, type="function", name=item.name, arguments=item.arguments))
            continue
        if pending_calls:
            messages.append((AssistantMessage(content=None, tool_calls=pending_calls), True))
            pending_calls = []
        if isinstance(item, Message) and item.role == "assistant":
            messages.append((AssistantMessage(content=item.text()), True))
        elif isinstance(item, FunctionCallOutput):
            output = item.output if isinstance(item.output, str) else json.dumps(item.output)
            messages.append((ToolMessage(tool_call_id=item.call_id, content=output), False))
    if pending_calls:
        messages.append((AssistantMessage(content=None, tool_calls=pending_calls), True))
    nodes = [
        MessageNode(parent=i - 1 if i else None, message=message, sampled=sampled)
        for i, (message, sampled) in enumerate(messages)
    ]
    return vf.Trace(
        task=TraceTask(type=type(task).__name__, data=task.data, key=task.key, hash=task.hash),
        agent=AgentInfo(config=AgentConfig()),
        nodes=nodes,
    )


class VerifiersConfig(ResourcesServerConfig):
    taskset: str = Field(description="'package.module:attribute': a verifiers Taskset, its class or a function")
    taskset_config: dict[str, Any] = Field(default_factory=dict)


class VerifiersVerifyRequest(VerifyRequest):
    vf_task_idx: int
    vf_task_key: str | None = None


class VerifiersServer(ResourcesServer):
    """Serves one verifiers taskset's scoring as ``/verify``."""

    config: VerifiersConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        taskset = load_taskset(self.config.taskset, self.config.taskset_config)
        self.tasks = {int(task.data.idx): task for task in taskset}
        for task in self.tasks.values():
            check_task(task)

    def setup_webserver(self) -> FastAPI:
        return super().setup_webserver()

    async def verify(self, body: VerifiersVerifyRequest) -> VerifyResponse:  # type: ignore[override]
        task = self.tasks.get(body.vf_task_idx)
        if task is None:
            raise RolloutError(
                f"{self.config.name}: no task {body.vf_task_idx} in {self.config.taskset} ({len(self.tasks)} tasks)",
                kind=FailureKind.BAD_INPUT, status=400,
            )
        if body.vf_task_key is not None and body.vf_task_key != task.key:
            raise RolloutError(
                f"{self.config.name}: task {body.vf_task_idx} of {self.config.taskset} changed since the row was written "
                f"(key {body.vf_task_key[:12]}…, now {task.key[:12]}…). Write the rows again.",
                kind=FailureKind.BAD_INPUT, status=400,
            )
        trace = build_trace(task, body.responses_create_params.input, body.response)
        try:
            await task.score(trace)
        except Exception as e:  # noqa: BLE001 - a reward function that fails is a typed failure, never 0
            raise RolloutError(f"{self.config.name}: scoring task {body.vf_task_idx} failed: {e}", kind=FailureKind.VERIFIER_ERROR) from e
        rewards = {name: (r.score if r is not None else None) for name, r in trace.rewards.items()}
        if any(value is None for value in rewards.values()):
            missing = [name for name, value in rewards.items() if value is None]
            raise RolloutError(f"{self.config.name}: rewards {missing} gave no score", kind=FailureKind.VERIFIER_ERROR)
        return VerifyResponse.of(body, reward=float(trace.reward), vf_rewards=rewards, vf_metrics=dict(trace.metrics))


def rows(spec: str, agent: str, config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    out = []
    for task in load_taskset(spec, config):
        check_task(task)
        out.append(
            {
                "responses_create_params": {"input": prompt_items(task)},
                "vf_task_idx": int(task.data.idx),
                "vf_task_key": task.key,
                "agent_ref": {"type": "responses_api_agents", "name": agent},
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ngym.interop.verifiers_env")
    sub = parser.add_subparsers(dest="command", required=True)
    made = sub.add_parser("rows", help="one data row per task (JSONL on stdout)")
    made.add_argument("taskset", help="package.module:attribute")
    made.add_argument("--agent", default="verifiers_simple_agent")
    made.add_argument("--config", default="{}", help="JSON passed to the taskset's config")
    args = parser.parse_args(argv)
    try:
        for row in rows(args.taskset, args.agent, json.loads(args.config)):
            print(json.dumps(row))
    except UnsupportedTaskset as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
