"""Token faithfulness of a multi-call episode: the check RL trainers rely on.

A trainer (NeMo RL's Gym integration, spec §12.1) walks an episode's output items, keeps those
carrying ``generation_token_ids`` (one per model call) and requires each call's
``prompt_token_ids`` to **start with** the previous call's prompt ids followed by its generated
ids: the trajectory must be one contiguous token sequence. A chat template that re-renders the
history differently from what the model generated (e.g. a tool call generated as a fenced JSON
block but re-rendered as ``<tool_call>`` tags) breaks that; :func:`check_token_faithfulness`
finds where, so the rollout can be flagged instead of silently training on wrong tokens.

>>> from ngym.wire.responses import Message
>>> a = Message(role="assistant", content="x", prompt_token_ids=[1, 2], generation_token_ids=[3], generation_log_probs=[-0.1])
>>> b = Message(role="assistant", content="y", prompt_token_ids=[1, 2, 3, 4], generation_token_ids=[5], generation_log_probs=[-0.2])
>>> check_token_faithfulness([a, b]).ok
True
>>> c = Message(role="assistant", content="y", prompt_token_ids=[1, 2, 9, 4], generation_token_ids=[5], generation_log_probs=[-0.2])
>>> check_token_faithfulness([a, c]).violations[0].first_mismatch
2
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

__all__ = ["FaithfulnessViolation", "TokenFaithfulness", "check_rollout", "check_token_faithfulness"]


class FaithfulnessViolation(BaseModel):
    """One model call whose prompt does not extend the previous call's prompt + generation."""

    #: 0-based index of the model call (among items carrying token ids)
    call: int
    #: length of previous prompt + previous generation, which the prompt should start with
    expected_prefix_len: int
    prompt_len: int
    #: first position where the prompt differs from that prefix (== prompt_len if it is shorter)
    first_mismatch: int


class TokenFaithfulness(BaseModel):
    """Verdict for one episode: ``ok`` iff every call's prompt extends the trajectory so far."""

    ok: bool = True
    #: model calls that carried token ids
    calls: int = 0
    violations: list[FaithfulnessViolation] = Field(default_factory=list)


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def _first_mismatch(prefix: list[int], prompt: list[int]) -> int:
    for i, (a, b) in enumerate(zip(prefix, prompt)):
        if a != b:
            return i
    return min(len(prefix), len(prompt))


def check_token_faithfulness(items: Iterable[Any]) -> TokenFaithfulness:
    """Check an episode's output items (pydantic items or their JSON dicts), in order."""
    report = TokenFaithfulness()
    trajectory: list[int] | None = None
    for item in items:
        generated = _field(item, "generation_token_ids")
        prompt = _field(item, "prompt_token_ids")
        if generated is None or prompt is None:
            continue
        prompt, generated = list(prompt), list(generated)
        if trajectory is not None and prompt[: len(trajectory)] != trajectory:
            report.violations.append(
                FaithfulnessViolation(
                    call=report.calls,
                    expected_prefix_len=len(trajectory),
                    prompt_len=len(prompt),
                    first_mismatch=_first_mismatch(trajectory, prompt),
                )
            )
        trajectory = prompt + generated
        report.calls += 1
    report.ok = not report.violations
    return report


def check_rollout(rollout: Mapping[str, Any]) -> TokenFaithfulness:
    """:func:`check_token_faithfulness` of a rollout row (``row["response"]["output"]``)."""
    response = rollout.get("response") or {}
    return check_token_faithfulness(response.get("output") or [])
