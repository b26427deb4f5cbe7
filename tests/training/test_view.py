"""The trainer's view of an episode, from hand-made token fields."""

from __future__ import annotations

from typing import Any

import pytest

import ngym
from ngym.training.view import TokenFaithfulnessError, episode_view


def call_item(prompt: list[int], gen: list[int], lps: list[float] | None, kind: str = "function_call") -> dict[str, Any]:
    item: dict[str, Any] = {"type": kind, "prompt_token_ids": prompt, "generation_token_ids": gen}
    if lps is not None:
        item["generation_log_probs"] = lps
    if kind == "function_call":
        item |= {"call_id": "c1", "name": "f", "arguments": "{}"}
    else:
        item |= {"role": "assistant", "content": [{"type": "output_text", "text": "done"}]}
    return item


def rollout(*items: dict[str, Any], reward: float = 0.5) -> dict[str, Any]:
    return {"response": {"output": list(items)}, "reward": reward}


def two_call_episode(second_prompt: list[int]) -> dict[str, Any]:
    return rollout(
        {"type": "reasoning", "summary": []},  # items without token ids are skipped
        call_item([1, 2, 3], [10, 11], [-0.1, -0.2]),
        {"type": "function_call_output", "call_id": "c1", "output": "tool says hi"},
        call_item(second_prompt, [20, 21, 22], [-0.3, -0.4, -0.5], kind="message"),
    )


def test_two_calls_join_into_one_sequence_with_mask_and_logprobs() -> None:
    view = episode_view(two_call_episode([1, 2, 3, 10, 11, 7, 8]))
    assert view.ok and view.reward == 0.5
    assert view.tokens == [1, 2, 3, 10, 11, 7, 8, 20, 21, 22]
    assert view.loss_mask == [0, 0, 0, 1, 1, 0, 0, 1, 1, 1]
    assert view.logprobs == [0.0, 0.0, 0.0, -0.1, -0.2, 0.0, 0.0, -0.3, -0.4, -0.5]
    assert view.prompt_ids == [1, 2, 3] and view.completion_ids == [10, 11, 7, 8, 20, 21, 22]
    assert view.completion_mask == [1, 1, 0, 0, 1, 1, 1] and view.generated_tokens == 5
    assert [t.generation_ids for t in view.turns] == [[10, 11], [20, 21, 22]]
    assert len(view.tokens) == len(view.loss_mask) == len(view.logprobs)
    assert ngym.episode_view is episode_view


def test_a_call_that_does_not_extend_the_trajectory_raises_with_where() -> None:
    bad = two_call_episode([1, 2, 3, 10, 99, 7, 8])  # the history was re-rendered: 11 became 99
    with pytest.raises(TokenFaithfulnessError) as e:
        episode_view(bad)
    assert "model call 1" in str(e.value) and "position 4" in str(e.value)
    assert e.value.violations[0].first_mismatch == 4


def test_report_mode_returns_the_violation_and_only_self_consistent_tokens() -> None:
    view = episode_view(two_call_episode([1, 2, 3, 10, 99, 7, 8]), on_violation="report")
    assert not view.ok and len(view.violations) == 1 and view.violations[0].call == 1
    assert view.tokens == [1, 2, 3, 10, 99, 7, 8, 20, 21, 22]  # the last call, as the model saw it
    assert view.loss_mask == [0] * 7 + [1, 1, 1]
    assert len(view.turns) == 2  # each call on its own, for one-row-per-turn training


def test_truncated_history_is_a_violation() -> None:
    with pytest.raises(TokenFaithfulnessError):
        episode_view(two_call_episode([1, 2, 3, 10]))


def test_missing_logprobs_give_no_logprobs_and_bad_lengths_are_errors() -> None:
    view = episode_view(rollout(call_item([1], [2, 3], None, kind="message")))
    assert view.logprobs is None and view.loss_mask == [0, 1, 1]
    with pytest.raises(TokenFaithfulnessError, match="2 generation_token_ids"):
        episode_view(rollout(call_item([1], [2, 3], [-1.0], kind="message")))


def test_no_token_ids_is_an_error_that_says_which_model_server_to_use() -> None:
    with pytest.raises(TokenFaithfulnessError, match="return_token_id_information"):
        episode_view(rollout({"type": "message", "role": "assistant", "content": "hi"}))
    with pytest.raises(ValueError, match="no 'response'"):
        episode_view({"reward": 1.0})
