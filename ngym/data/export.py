"""Offline training data from rollouts: chat-format SFT rows and DPO preference pairs.

A rollout (a line of ``ng_collect_rollouts``' output) holds the task's ``responses_create_params``
(the conversation so far, tools) and the ``response`` (every item the episode generated: assistant
messages, tool calls, tool outputs, reasoning). Both are turned into OpenAI Chat Completions
messages, the format SFT/DPO trainers (TRL's ``SFTTrainer``/``DPOTrainer``, ...) read:

* ``developer``/``system`` messages -> ``system``; ``instructions`` -> a leading ``system`` message;
* assistant text, reasoning and the tool calls of one model turn -> one ``assistant`` message
  (``content``, ``reasoning_content``, ``tool_calls: [{id, type: function, function: {name, arguments}}]``);
* ``function_call_output`` -> ``{"role": "tool", "tool_call_id", "content"}``;
* tools -> ``[{"type": "function", "function": {name, description, parameters}}]``.

SFT: one row per rollout whose reward is at least ``min_reward``:
``{"messages": [...], "tools": [...], "reward", "agent_ref", "_ng_task_index", "_ng_rollout_index"}``.

DPO: per task (``_ng_task_index``; rollouts without one are grouped by their identical request),
the best and the worst rollout by reward, skipped when they tie:
``{"prompt": [...], "chosen": [...], "rejected": [...], "tools", "chosen_reward", "rejected_reward", ...}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ngym.errors import InputError
from ngym.wire.content import content_text

__all__ = ["ExportStats", "chat_tools", "dpo_pairs", "input_messages", "output_messages", "sft_rows"]

TASK_INDEX = "_ng_task_index"
ROLLOUT_INDEX = "_ng_rollout_index"

Message = dict[str, Any]


class _Builder:
    """Accumulates chat messages; consecutive assistant pieces form one assistant message."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._assistant: Message | None = None

    def flush(self) -> None:
        if self._assistant is not None:
            self.messages.append(self._assistant)
            self._assistant = None

    def assistant(self) -> Message:
        if self._assistant is None:
            self._assistant = {"role": "assistant", "content": None}
        return self._assistant

    def add(self, item: Any, where: str) -> None:
        if not isinstance(item, Mapping):
            raise InputError(f"{where}: an item must be a JSON object, not {type(item).__name__}")
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = item.get("role")
            content = item.get("content")
            # a scalar content (not the string or list of parts the API sends) is kept as its text
            text = str(content) if content is not None and not isinstance(content, str | list) else content_text(content)
            if role == "assistant":
                current = self.assistant()
                if current.get("tool_calls"):  # text after tool calls in one turn: keep order, new message
                    self.flush()
                    current = self.assistant()
                current["content"] = (current["content"] or "") + text
                return
            self.flush()
            if role in ("system", "developer"):
                self.messages.append({"role": "system", "content": text})
            elif role == "user":
                self.messages.append({"role": "user", "content": text})
            else:
                raise InputError(f"{where}: unknown message role {role!r}")
        elif kind == "function_call":
            call = {
                "id": item.get("call_id") or item.get("id"),
                "type": "function",
                "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
            }
            self.assistant().setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            self.flush()
            output = item.get("output")
            content = output if isinstance(output, str) else json.dumps(output)
            self.messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": content})
        elif kind == "reasoning":
            summary = "\n".join(content_text([s]) for s in item.get("summary") or [] if isinstance(s, Mapping))
            if summary:
                current = self.assistant()
                current["reasoning_content"] = (current.get("reasoning_content") or "") + summary
        else:
            raise InputError(f"{where}: unknown item type {kind!r} (expected message, function_call, function_call_output, reasoning)")

    def done(self) -> list[Message]:
        self.flush()
        return self.messages


def _request(rollout: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    params = rollout.get("responses_create_params")
    if not isinstance(params, Mapping):
        raise InputError(f"{where}: no 'responses_create_params' object; is this a rollouts file (ng_collect_rollouts output)?")
    return params


def input_messages(rollout: Mapping[str, Any], where: str = "rollout") -> list[Message]:
    """The conversation the episode started from (``responses_create_params``) as chat messages."""
    params = _request(rollout, where)
    builder = _Builder()
    if params.get("instructions"):
        builder.messages.append({"role": "system", "content": str(params["instructions"])})
    items = params.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for i, item in enumerate(items or []):
        builder.add(item, f"{where}: responses_create_params.input[{i}]")
    return builder.done()


def output_messages(rollout: Mapping[str, Any], where: str = "rollout") -> list[Message]:
    """What the episode added (``response.output``: assistant turns, tool calls, tool outputs)."""
    response = rollout.get("response")
    if not isinstance(response, Mapping):
        raise InputError(f"{where}: no 'response' object; is this a rollouts file (ng_collect_rollouts output)?")
    builder = _Builder()
    for i, item in enumerate(response.get("output") or []):
        builder.add(item, f"{where}: response.output[{i}]")
    return builder.done()


def chat_tools(rollout: Mapping[str, Any], where: str = "rollout") -> list[dict[str, Any]]:
    tools = []
    for tool in _request(rollout, where).get("tools") or []:
        if isinstance(tool, Mapping) and tool.get("type", "function") == "function":
            function = {"name": tool.get("name"), "description": tool.get("description") or "", "parameters": tool.get("parameters") or {}}
            tools.append({"type": "function", "function": function})
    return tools


def _reward(rollout: Mapping[str, Any], where: str) -> float:
    reward = rollout.get("reward")
    if isinstance(reward, bool) or not isinstance(reward, int | float):
        raise InputError(f"{where}: no numeric 'reward' (got {reward!r}); export needs verified rollouts.")
    return float(reward)


def _meta(rollout: Mapping[str, Any]) -> dict[str, Any]:
    return {k: rollout[k] for k in ("agent_ref", TASK_INDEX, ROLLOUT_INDEX) if k in rollout}


@dataclass(slots=True)
class ExportStats:
    read: int = 0
    written: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, why: str, n: int = 1) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + n


def sft_rows(
    rollouts: Iterable[tuple[str, Mapping[str, Any]]], min_reward: float | None = None, stats: ExportStats | None = None
) -> Iterable[dict[str, Any]]:
    """One chat row per rollout whose reward is ``>= min_reward`` (all when None).
    ``rollouts`` yields ``(where, rollout)`` (``where`` names the line in errors)."""
    stats = stats if stats is not None else ExportStats()
    for where, rollout in rollouts:
        stats.read += 1
        reward = _reward(rollout, where)
        if min_reward is not None and reward < min_reward:
            stats.skip(f"reward below {min_reward:g}")
            continue
        messages = input_messages(rollout, where) + output_messages(rollout, where)
        stats.written += 1
        yield {"messages": messages, "tools": chat_tools(rollout, where), "reward": reward, **_meta(rollout)}


def _group_key(rollout: Mapping[str, Any], where: str) -> str:
    if TASK_INDEX in rollout:
        return f"task:{rollout[TASK_INDEX]}"
    return "request:" + json.dumps(_request(rollout, where), sort_keys=True)


def dpo_pairs(
    rollouts: Iterable[tuple[str, Mapping[str, Any]]], min_margin: float = 0.0, stats: ExportStats | None = None
) -> list[dict[str, Any]]:
    """Per task, best vs worst rollout (by reward); a pair whose reward gap is ``<= min_margin``
    (a tie, by default) or a task with one rollout is skipped. Among equal rewards the lowest
    ``_ng_rollout_index`` wins, so the output is deterministic."""
    stats = stats if stats is not None else ExportStats()
    groups: dict[str, list[tuple[str, Mapping[str, Any], float]]] = {}
    for where, rollout in rollouts:
        stats.read += 1
        groups.setdefault(_group_key(rollout, where), []).append((where, rollout, _reward(rollout, where)))
    pairs = []
    for members in groups.values():
        if len(members) < 2:
            stats.skip("task with a single rollout")
            continue
        ordered = sorted(members, key=lambda m: (-m[2], int(m[1].get(ROLLOUT_INDEX, 0))))
        (w_best, best, r_best), (w_worst, worst, r_worst) = ordered[0], ordered[-1]
        if r_best - r_worst <= min_margin:
            stats.skip("tie (best and worst reward equal)" if r_best == r_worst else f"reward gap <= {min_margin:g}")
            continue
        prompt = input_messages(best, w_best)
        if input_messages(worst, w_worst) != prompt:
            raise InputError(f"{w_best} and {w_worst} share {TASK_INDEX} but start from different conversations; check the file.")
        pairs.append(
            {
                "prompt": prompt,
                "chosen": output_messages(best, w_best),
                "rejected": output_messages(worst, w_worst),
                "tools": chat_tools(best, w_best),
                "chosen_reward": r_best,
                "rejected_reward": r_worst,
                **{k: v for k, v in _meta(best).items() if k != ROLLOUT_INDEX},
                "chosen_rollout_index": best.get(ROLLOUT_INDEX),
                "rejected_rollout_index": worst.get(ROLLOUT_INDEX),
            }
        )
        stats.written += 1
    return pairs
