"""The typed environment contract (ngym.env): tools from signatures and docstrings, task and state
per episode, verdicts and typed failures, /spec, and the tools a row may omit or must agree with."""

from __future__ import annotations

import asyncio
import json
import math
import threading
import types
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

import ngym.env
from ngym.devkit.testing.asgi import wire
from ngym.env import (
    EnvConfig,
    Environment,
    NoState,
    ResourcesServerConfig,
    ToolError,
    Verdict,
    VerifierError,
    run_blocking,
    tool,
)
from ngym.env.tools import ToolChecker, build_tool, parse_docstring
from ngym.server.client import ServerClient, response_cookies
from ngym.wire.responses import Response
from responses_api_agents.simple_agent.app import SimpleAgent
from tests.fakes import COMPAT, QueueModel, call, compat_rows, make, ref, say

pytestmark = pytest.mark.anyio


def test_exported_members() -> None:
    """One public list: every public name of ngym.env is in __all__ and the other way round."""
    public = {
        name
        for name, value in vars(ngym.env).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType) and name != "annotations"
    }
    assert sorted(ngym.env.__all__) == sorted(public)
    assert ngym.env.__all__ == sorted(ngym.env.__all__)
    for name in ("Environment", "EnvConfig", "NoState", "tool", "Verdict", "ToolError", "VerifierError", "run_blocking"):
        assert name in ngym.env.__all__


# ---- an environment exercising the contract --------------------------------------------------


class Task(BaseModel):
    question: str
    expected_answer: str


class Guesses(BaseModel):
    guesses: int = 0
    history: list[str] = []


class Hint(BaseModel):
    hint: str


class Where(BaseModel):
    """Where to look."""

    shelf: int = Field(ge=1)
    side: Literal["left", "right"]


class HintConfig(EnvConfig):
    reward_mode: Literal["binary", "partial"] = "binary"


class HintEnv(Environment[Task, Guesses]):
    config: HintConfig
    setups = 0

    async def setup(self) -> None:
        type(self).setups += 1
        self.vocabulary = {"paris", "tokyo"}

    async def seed(self) -> None:
        self.state.history.append("seeded")

    @tool
    async def get_hint(self, level: int, verbose: bool = False) -> Hint:
        """Get a hint about the answer.

        The hint grows with the level.

        Args:
            level: How strong the hint is (1-3).
            verbose: Explain the hint.
        """
        if not 1 <= level <= 3:
            raise ToolError(f"level must be 1, 2 or 3, not {level}")
        self.state.guesses += 1
        text = self.task.expected_answer[:level]
        return Hint(hint=f"It starts with {text!r}." if verbose else text)

    @tool
    async def guess(self, answer: str, where: Where | None = None) -> dict[str, Any]:
        """Make a guess.

        Args:
            answer: The guess.
            where: Optional: where the answer was found.
        """
        await asyncio.sleep(0.01)  # other episodes run meanwhile
        self.state.guesses += 1
        self.state.history.append(answer)
        return {"correct": answer == self.task.expected_answer, "guesses": self.state.guesses}

    @tool
    async def guesses_so_far(self) -> str:
        """How many guesses this episode made."""
        return str(self.state.guesses)

    @tool
    async def slow_square(self, n: int) -> int:
        """Square a number the slow way (a blocking call, off the event loop).

        Args:
            n: The number.
        """
        def work(x: int) -> tuple[int, str, bool]:
            return x * x, self.task.question, threading.current_thread() is threading.main_thread()

        result, question, on_main = await run_blocking(work, n)
        assert question and not on_main
        return result

    async def verify(self, response: Response) -> Verdict:
        text = response.output_text()
        if text == "judge down":
            raise VerifierError("the judge timed out")
        if text == "nan":
            return Verdict(reward=math.nan)
        if text == "inf":
            return Verdict(reward=math.inf)
        answer = text.strip().lower() or None
        reward = float(answer == self.task.expected_answer.lower())
        if self.config.reward_mode == "partial" and answer and reward == 0.0:
            reward = 0.5 * float(answer in self.vocabulary)
        return Verdict(reward=reward, parsed_answer=answer, guesses=self.state.guesses)


ROW: dict[str, Any] = {
    "responses_create_params": {"input": [{"role": "user", "content": "Capital of France?"}]},
    "question": "Capital of France?",
    "expected_answer": "Paris",
    "other_env_field": [1, 2],
}


def answered(text: str, row: dict[str, Any] | None = None) -> dict[str, Any]:
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    return {**(row or ROW), "response": {"output": [message] if text else []}}


@pytest.fixture
def env() -> HintEnv:
    return make(HintEnv, "env", domain="other")


@pytest.fixture
def client(env: HintEnv) -> ServerClient:
    return wire({"env": env})


async def seeded(client: ServerClient, row: dict[str, Any] | None = None) -> dict[str, str]:
    answer = await client.post("env", "/seed_session", json=row or ROW)
    assert answer.status_code == 200, answer.text
    return response_cookies(answer)


# ---- tool schemas from signatures and docstrings ---------------------------------------------


def test_tool_schema_from_signature_and_docstring() -> None:
    schemas = {s["name"]: s for s in HintEnv.tool_schemas()}
    assert list(schemas) == ["get_hint", "guess", "guesses_so_far", "slow_square"]
    assert schemas["get_hint"] == {
        "type": "function",
        "name": "get_hint",
        "description": "Get a hint about the answer.\n\nThe hint grows with the level.",
        "parameters": {
            "type": "object",
            "properties": {
                "level": {"type": "integer", "description": "How strong the hint is (1-3)."},
                "verbose": {"type": "boolean", "description": "Explain the hint.", "default": False},
            },
            "required": ["level"],
            "additionalProperties": False,
        },
        "strict": False,  # an optional argument: not strict-mode compatible
    }
    assert schemas["slow_square"]["strict"] is True
    assert schemas["guesses_so_far"]["parameters"] == {
        "type": "object", "properties": {}, "required": [], "additionalProperties": False
    }
    where = schemas["guess"]["parameters"]
    assert where["$defs"]["Where"]["properties"]["side"] == {"enum": ["left", "right"], "type": "string"}
    assert "title" not in json.dumps(where)
    # a copy: changing it changes nothing
    HintEnv.tool_schemas()[0]["name"] = "changed"
    assert HintEnv.tool_schemas()[0]["name"] == "get_hint"


def test_docstring_parsing() -> None:
    doc = """Summary line
    continues here.

    Args:
        a (int): First
            and more.
        b: Second.

    Returns:
        c: not an argument.
    """
    assert parse_docstring(doc) == ("Summary line continues here.", {"a": "First and more.", "b": "Second."})
    assert parse_docstring(None) == ("", {})


def test_tool_declaration_mistakes_are_named() -> None:
    async def documented_ghost(self: Any, a: int) -> int:
        """Doc.

        Args:
            a: A.
            b: Not an argument.
        """
        return a

    with pytest.raises(TypeError, match=r"documents \['b'\]"):
        build_tool(documented_ghost, "Env")

    async def unannotated(self, a):  # type: ignore[no-untyped-def]
        return a

    with pytest.raises(TypeError, match="annotate the argument 'a'"):
        build_tool(unannotated, "Env")

    async def verify(self: Any) -> None:
        return None

    with pytest.raises(TypeError, match="cannot be a tool name"):
        build_tool(verify, "Env")

    with pytest.raises(TypeError, match="async def"):
        tool(lambda self: None)  # type: ignore[type-var]


def test_task_and_state_types_are_read_from_the_class() -> None:
    assert (HintEnv.task_type, HintEnv.state_type) == (Task, Guesses)
    assert HintEnv.config_type() is HintConfig
    spec = HintEnv.spec()
    assert spec["task_schema"]["required"] == ["question", "expected_answer"]
    assert [t["name"] for t in spec["tools"]] == [t["name"] for t in HintEnv.tool_schemas()]


# ---- the routes ------------------------------------------------------------------------------


async def test_spec_and_seed_answer_the_declared_tools(client: ServerClient) -> None:
    spec = (await client.get("env", "/spec")).json()
    assert spec == HintEnv.spec()
    assert (await client.post("env", "/seed_session", json=ROW)).json() == {"tools": HintEnv.tool_schemas()}


async def test_tool_arguments_are_validated_and_extra_ones_rejected(client: ServerClient) -> None:
    cookies = await seeded(client)
    ok = await client.post("env", "/get_hint", json={"level": 2}, cookies=cookies)
    assert ok.status_code == 200 and ok.json() == {"hint": "Pa"}
    extra = await client.post("env", "/get_hint", json={"level": 2, "colour": "red"}, cookies=cookies)
    assert extra.status_code == 422
    assert extra.json()["detail"][0]["loc"] == ["body", "colour"] and extra.json()["detail"][0]["type"] == "extra_forbidden"
    wrong = await client.post("env", "/get_hint", json={"level": "high"}, cookies=cookies)
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "level"]
    missing = await client.post("env", "/get_hint", json={}, cookies=cookies)
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "level"]
    nested = await client.post("env", "/guess", json={"answer": "Paris", "where": {"shelf": 0, "side": "left"}}, cookies=cookies)
    assert nested.status_code == 422 and nested.json()["detail"][0]["loc"] == ["body", "where", "shelf"]
    # a tool without arguments answers with no body at all, and returns a string as JSON
    assert (await client.post("env", "/guesses_so_far", cookies=cookies)).json() == "1"


async def test_tool_error_is_a_message_for_the_model(client: ServerClient) -> None:
    cookies = await seeded(client)
    answer = await client.post("env", "/get_hint", json={"level": 9}, cookies=cookies)
    assert answer.status_code == 200
    assert answer.json() == {"error": "level must be 1, 2 or 3, not 9"}


async def test_blocking_work_runs_in_a_thread_with_the_episode(client: ServerClient) -> None:
    cookies = await seeded(client)
    assert (await client.post("env", "/slow_square", json={"n": 12}, cookies=cookies)).json() == 144


async def test_a_tool_outside_a_seeded_episode_names_the_missing_seed(client: ServerClient) -> None:
    answer = await client.post("env", "/get_hint", json={"level": 1})
    assert answer.status_code == 409 and answer.json()["kind"] == "resources_error"  # the caller's mistake
    assert "not seeded" in answer.json()["error"] and "/seed_session" in answer.json()["error"]


async def test_state_is_per_episode_under_concurrency(client: ServerClient, env: HintEnv) -> None:
    tokyo = {**ROW, "question": "Capital of Japan?", "expected_answer": "Tokyo"}
    a, b = await asyncio.gather(seeded(client), seeded(client, tokyo))
    assert a != b

    async def play(cookies: dict[str, str], answers: list[str]) -> list[Any]:
        return [(await client.post("env", "/guess", json={"answer": x}, cookies=cookies)).json() for x in answers]

    ra, rb = await asyncio.gather(play(a, ["Lyon", "Paris", "Nice"]), play(b, ["Tokyo"]))
    assert [r["correct"] for r in ra] == [False, True, False] and [r["guesses"] for r in ra] == [1, 2, 3]
    assert rb == [{"correct": True, "guesses": 1}]
    va = (await client.post("env", "/verify", json=answered("Paris"), cookies=a)).json()
    vb = (await client.post("env", "/verify", json=answered("Paris", tokyo), cookies=b)).json()
    assert (va["reward"], va["guesses"]) == (1.0, 3)
    assert (vb["reward"], vb["guesses"]) == (0.0, 1)  # the task of /verify is its body's
    assert len(env.episodes) == 2
    assert (await client.post("env", "/close_session", json={}, cookies=a)).json() == {"closed": True}
    assert len(env.episodes) == 1


async def test_verify_echoes_the_row_with_reward_and_metrics(client: ServerClient) -> None:
    answer = await client.post("env", "/verify", json=answered(" paris "))
    assert answer.status_code == 200
    body = answer.json()
    assert body["reward"] == 1.0 and body["parsed_answer"] == "paris" and body["guesses"] == 0
    assert body["expected_answer"] == "Paris" and body["other_env_field"] == [1, 2]  # every row field is kept
    assert body["response"]["output"][0]["content"][0]["text"] == " paris "
    unanswered = (await client.post("env", "/verify", json=answered(""))).json()
    assert unanswered["reward"] == 0.0 and "parsed_answer" not in unanswered  # None metrics are left out


async def test_config_is_typed() -> None:
    partial = wire({"env": make(HintEnv, "env", domain="other", reward_mode="partial")})
    assert (await partial.post("env", "/verify", json=answered("tokyo"))).json()["reward"] == 0.5
    with pytest.raises(Exception, match="reward_mode"):
        make(HintEnv, "env", domain="other", reward_mode="sometimes")


@pytest.mark.parametrize(("text", "message"), [("judge down", "the judge timed out"), ("nan", "nan"), ("inf", "inf")])
async def test_verifier_error_and_non_finite_rewards_are_typed_failures(client: ServerClient, text: str, message: str) -> None:
    answer = await client.post("env", "/verify", json=answered(text))
    assert answer.status_code == 500
    body = answer.json()
    assert body["kind"] == "verifier_error" and message in body["error"] and body["retryable"] is False
    assert "reward" not in body


async def test_task_validation_errors_name_the_field(client: ServerClient) -> None:
    row = {k: v for k, v in ROW.items() if k != "expected_answer"}
    for route, body in (("/seed_session", row), ("/verify", answered("Paris", row))):
        answer = await client.post("env", route, json=body)
        assert answer.status_code == 422, answer.text
        error = answer.json()
        assert error["kind"] == "bad_input" and error["retryable"] is False
        assert "expected_answer: Field required" in error["error"] and "HintEnv" in error["error"]
    wrong = await client.post("env", "/seed_session", json={**ROW, "question": ["not", "text"]})
    assert wrong.status_code == 422 and "question: Input should be a valid string" in wrong.json()["error"]


async def test_setup_runs_once_before_the_first_request(env: HintEnv, client: ServerClient) -> None:
    HintEnv.setups = 0
    await asyncio.gather(*(client.post("env", "/verify", json=answered("Paris")) for _ in range(5)))
    assert HintEnv.setups == 1 and env.vocabulary == {"paris", "tokyo"}


# ---- rows that carry tools -------------------------------------------------------------------


def with_tools(tools: list[dict[str, Any]]) -> dict[str, Any]:
    return {**ROW, "responses_create_params": {**ROW["responses_create_params"], "tools": tools}}


async def test_rows_that_carry_the_declared_tools_are_accepted(client: ServerClient) -> None:
    tools = HintEnv.tool_schemas()
    for t in tools:  # descriptions and titles are the row's business
        t["description"] = "something else"
        for name, prop in t["parameters"]["properties"].items():
            prop["description"], prop["title"] = "", name.title()
    assert (await client.post("env", "/seed_session", json=with_tools(tools[:1]))).status_code == 200


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda t: t.update(name="get_clue"), "the row offers the tool 'get_clue', which HintEnv does not declare"),
        (lambda t: t["parameters"]["properties"]["level"].update(type="string"),
         ("the row's tool 'get_hint' differs from HintEnv's declaration at parameters.properties.level.type: "
          'the row has "string", the environment declares "integer"')),
        (lambda t: t["parameters"].update(required=["level", "verbose"]), "parameters.required"),
        (lambda t: t["parameters"]["properties"].pop("verbose"), "parameters.properties.verbose"),
    ],
)
async def test_rows_whose_tools_differ_are_bad_input_naming_tool_and_difference(
    client: ServerClient, change: Any, expected: str
) -> None:
    tools = HintEnv.tool_schemas()
    change(tools[0])
    answer = await client.post("env", "/seed_session", json=with_tools(tools))
    assert answer.status_code == 422
    assert answer.json()["kind"] == "bad_input" and expected in answer.json()["error"]


def test_tool_comparison_runs_once_per_distinct_tools_list() -> None:
    checker = ToolChecker("HintEnv", HintEnv.tools())
    calls = 0
    compare = checker._compare

    def counting(tools: Any) -> str | None:
        nonlocal calls
        calls += 1
        return compare(tools)

    checker._compare = counting  # type: ignore[method-assign]
    good, bad = HintEnv.tool_schemas(), [{"type": "function", "name": "nope"}]
    assert [checker.problem(good) for _ in range(100)] == [None] * 100
    assert all(checker.problem(bad) for _ in range(100))
    assert calls == 2
    assert checker.problem(None) is None and checker.problem([]) is None
    assert checker.problem([{"type": "web_search"}]) is None  # built-in tools are not ours to check


# ---- through the agent -----------------------------------------------------------------------


def deploy(model: QueueModel, env: HintEnv | None = None) -> ServerClient:
    agent = make(SimpleAgent, "agent", resources_server=ref("resources_servers", "env"),
                 model_server=ref("responses_api_models", "model"))
    return wire({"env": env or make(HintEnv, "env", domain="other"), "model": model, "agent": agent})


async def test_agent_gives_a_row_without_tools_the_declared_ones_and_records_them() -> None:
    model = make(QueueModel, "model")
    model.turns = [[call("get_hint", {"level": 1})], [call("guess", {"answer": "Paris"})], [say("Paris")]]
    client = deploy(model)
    answer = await client.post("agent", "/run", json=ROW)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["reward"] == 1.0 and result["guesses"] == 2
    declared = HintEnv.tool_schemas()
    assert [t.model_dump(exclude_none=True) for t in model.requests[0].tools or []] == declared
    assert result["responses_create_params"]["tools"] == declared
    outputs = [i["output"] for i in result["response"]["output"] if i["type"] == "function_call_output"]
    assert json.loads(outputs[0]) == {"hint": "P"}


async def test_agent_passes_on_bad_input_and_verifier_error_as_typed_failures() -> None:
    client = deploy(make(QueueModel, "model"))
    bad = await client.post("agent", "/run", json=with_tools([{"type": "function", "name": "get_clue"}]))
    assert bad.status_code == 422
    assert bad.json()["kind"] == "bad_input" and bad.json()["retryable"] is False and "get_clue" in bad.json()["error"]
    model = make(QueueModel, "model")
    model.turns = [[say("judge down")]]
    failed = await deploy(model).post("agent", "/run", json=ROW)
    assert failed.status_code == 502
    body = failed.json()
    assert body["kind"] == "verifier_error" and "the judge timed out" in body["error"] and body["retryable"] is False
    assert "reward" not in body


# ---- declarations ----------------------------------------------------------------------------


def test_state_needs_defaults_and_types_must_be_models() -> None:
    class NeedsValue(BaseModel):
        n: int

    class Bad(Environment[Task, NeedsValue]):
        async def verify(self, response: Response) -> Verdict:
            return Verdict(reward=0.0)

    with pytest.raises(TypeError, match="needs a default for every field"):
        Bad.tool_schemas()
    class Clash(Environment[Task, NoState]):
        @tool
        async def seed(self) -> None:
            """Not a tool name."""

    with pytest.raises(TypeError, match=r"@tool \['seed'\] would replace"):
        Clash.tool_schemas()
    class OldConfig(Environment[Task, NoState]):
        config: ResourcesServerConfig  # type: ignore[assignment]

    with pytest.raises(TypeError, match="annotate `config` with an EnvConfig subclass"):
        OldConfig.config_type()
    with pytest.raises(TypeError, match="must be a pydantic BaseModel"):
        class NotAModel(Environment[dict, NoState]):  # type: ignore[type-var,type-arg]
            pass


def test_a_subclass_inherits_tools_and_types() -> None:
    class More(HintEnv):
        @tool
        async def give_up(self) -> dict[str, str]:
            """Give up and see the answer."""
            return {"answer": self.task.expected_answer}

    assert (More.task_type, More.state_type) == (Task, Guesses)
    assert [t["name"] for t in More.tool_schemas()] == ["get_hint", "guess", "guesses_so_far", "slow_square", "give_up"]
    assert [t["name"] for t in HintEnv.tool_schemas()] == ["get_hint", "guess", "guesses_so_far", "slow_square"]


async def test_the_collector_writes_verifier_errors_and_bad_rows_as_failures_never_rewards(tmp_path: Any) -> None:
    from ngym.rollout.collect import ROLLOUT_INDEX, TASK_INDEX, collect
    from ngym.rollout.collect import Task as CollectTask

    model = make(QueueModel, "model")
    model.turns = [[say("Paris")], [say("judge down")]]
    client = deploy(model)
    rows = [ROW, with_tools([{"type": "function", "name": "get_clue"}]), ROW]
    tasks = [CollectTask({**row, TASK_INDEX: i, ROLLOUT_INDEX: 0}, "agent", i + 1) for i, row in enumerate(rows)]
    output = tmp_path / "out.jsonl"
    report = await collect(client, tasks, output, concurrency=1, progress=False)
    written = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r[TASK_INDEX], r["reward"]) for r in written] == [(0, 1.0)]
    failures = [json.loads(line) for line in (tmp_path / "out_failures.jsonl").read_text().splitlines()]
    assert [(f[TASK_INDEX], f["kind"], f["attempts"]) for f in failures] == [(1, "bad_input", 1), (2, "verifier_error", 1)]
    assert "get_clue" in failures[0]["error"] and "the judge timed out" in failures[1]["error"]
    assert all("reward" not in f for f in failures) and len(report.failures) == 2


async def test_contract_routes_take_the_fast_path_and_answer_as_the_full_stack() -> None:
    """The fast path serves the declared routes from their signatures (the argument model as the
    body), with the same answers as FastAPI's full stack."""
    import httpx

    app = make(HintEnv, "env", domain="other").build_app()
    assert {("POST", p) for p in ("/seed_session", "/verify", "/get_hint", "/guess", "/guesses_so_far")} <= set(app.fast.routes)
    steps: list[tuple[str, Any]] = [
        ("/seed_session", ROW),
        ("/get_hint", {"level": 1}),
        ("/get_hint", {"level": 9}),
        ("/get_hint", {"level": 1, "extra": 1}),
        ("/guess", {"answer": "Paris", "where": {"shelf": 1, "side": "left"}}),
        ("/guesses_so_far", None),
        ("/verify", answered("Paris")),
        ("/verify", answered("judge down")),
        ("/seed_session", {"question": "no answer"}),
        ("/close_session", {}),
    ]
    answers = []
    for asgi in (app, app.app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://env") as http:
            seen = []
            for path, body in steps:
                answer = await http.post(path, content=b"" if body is None else json.dumps(body),
                                         headers={"content-type": "application/json"})
                payload = answer.json()
                if isinstance(payload, dict) and "response" in payload:  # a fresh id and time per parse
                    payload["response"] = {k: v for k, v in payload["response"].items() if k not in ("id", "created_at")}
                seen.append((path, answer.status_code, payload))
            answers.append(seen)
    assert answers[0] == answers[1]
    assert [status for _, status, _ in answers[0]] == [200, 200, 200, 422, 200, 200, 200, 500, 422, 200]


@pytest.mark.skipif(not COMPAT.exists(), reason="shared/compat not present")
@pytest.mark.parametrize("name", ["example_single_tool_call", "example_multi_step", "example_session_state_mgmt"])
def test_the_reference_rows_carry_tools_that_agree_with_the_ported_declarations(name: str) -> None:
    """The reference's data rows and recorded rollouts (their tools written by hand, with titles and
    empty descriptions) pass the check against the ported environments' declarations."""
    import importlib

    module = importlib.import_module(f"resources_servers.{name}.app")
    env = next(v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Environment) and v.__module__ == module.__name__)
    rows = compat_rows(name) + compat_rows(name, "example_rollouts.jsonl")
    assert all(row["responses_create_params"].get("tools") for row in rows)
    assert [env.check_tools(row["responses_create_params"]["tools"]) for row in rows] == [None] * len(rows)


async def test_run_in_process_runs_a_function_in_another_process() -> None:
    import math
    import os

    from ngym.env import run_in_process

    assert await run_in_process(math.factorial, 20) == 2432902008176640000
    assert await run_in_process(os.getpid) != os.getpid()


# ---- run-time tools (known once the environment runs: an MCP server's, another framework's) ----


class Counter(BaseModel):
    calls: list[str] = Field(default_factory=list)


class DynamicEnv(Environment[Task, Counter]):
    """One @tool and two tools listed at run time, as an MCP-backed environment would."""

    config: EnvConfig
    listed: list[dict[str, Any]] = [
        {"type": "function", "name": "lookup", "description": "Look a word up.",
         "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}},
        {"type": "function", "name": "ping", "description": "No arguments.", "parameters": None},
    ]
    torn_down = 0

    @tool
    async def static_tool(self) -> str:
        """A declared tool."""
        return "static"

    async def setup(self) -> None:
        self.setups = getattr(self, "setups", 0) + 1

    async def runtime_tools(self) -> list[dict[str, Any]]:
        return self.listed

    async def call_runtime_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        if name == "lookup" and not arguments.get("word"):
            raise ToolError("lookup needs a word")
        self.state.calls.append(name)
        return {"tool": name, "arguments": arguments, "task": self.task.question, "calls": len(self.state.calls)}

    async def teardown(self) -> None:
        DynamicEnv.torn_down += 1

    async def verify(self, response: Response) -> Verdict:
        return Verdict(reward=float(len(self.state.calls)), calls=list(self.state.calls))


async def test_runtime_tools_are_offered_routed_and_see_the_episode() -> None:
    env = make(DynamicEnv, "env", domain="other")
    client = wire({"env": env})
    offered = (await client.post("env", "/seed_session", json=ROW)).json()["tools"]
    assert [t["name"] for t in offered] == ["static_tool", "lookup", "ping"]
    assert [t["name"] for t in (await client.get("env", "/spec")).json()["tools"]] == ["static_tool", "lookup", "ping"]
    cookies = await seeded(client)
    first = (await client.post("env", "/lookup", json={"word": "x"}, cookies=cookies)).json()
    assert first == {"tool": "lookup", "arguments": {"word": "x"}, "task": "Capital of France?", "calls": 1}
    assert (await client.post("env", "/ping", cookies=cookies)).json()["calls"] == 2  # no body at all
    assert (await client.post("env", "/lookup", json={}, cookies=cookies)).json() == {"error": "lookup needs a word"}
    assert (await client.post("env", "/static_tool", cookies=cookies)).json() == "static"
    verdict = (await client.post("env", "/verify", json=answered("x"), cookies=cookies)).json()
    assert verdict["reward"] == 2.0 and verdict["calls"] == ["lookup", "ping"]
    # another episode has its own state
    other = await seeded(client)
    assert (await client.post("env", "/ping", cookies=other)).json()["calls"] == 1
    assert env.setups == 1


async def test_an_unknown_runtime_tool_is_a_404_naming_the_tools() -> None:
    client = wire({"env": make(DynamicEnv, "env", domain="other")})
    answer = await client.post("env", "/lokup", json={"word": "x"}, cookies=await seeded(client))
    assert answer.status_code == 404 and answer.json()["kind"] == "bad_input"
    assert "'lokup'" in answer.json()["error"] and "['lookup', 'ping', 'static_tool']" in answer.json()["error"]


async def test_rows_carrying_runtime_tools_are_checked_against_them() -> None:
    client = wire({"env": make(DynamicEnv, "env", domain="other")})
    lookup = DynamicEnv.listed[0]
    agree = {**ROW, "responses_create_params": {**ROW["responses_create_params"], "tools": [lookup]}}
    assert (await client.post("env", "/seed_session", json=agree)).status_code == 200
    changed = {**lookup, "parameters": {"type": "object", "properties": {"word": {"type": "integer"}}}}
    differ = {**ROW, "responses_create_params": {**ROW["responses_create_params"], "tools": [changed]}}
    answer = await client.post("env", "/seed_session", json=differ)
    assert answer.status_code == 422 and "'lookup'" in answer.json()["error"], answer.text


@pytest.mark.parametrize(("listed", "message"), [
    ([{"type": "function", "name": "static_tool"}], "is a @tool"),
    ([{"type": "function", "name": "verify"}], "a route of every environment"),
    ([{"type": "function", "name": "a"}, {"type": "function", "name": "a"}], "listed twice"),
    ([{"type": "function"}], "not a function tool with a name"),
])
async def test_runtime_tool_names_that_clash_fail_the_start(listed: list[dict[str, Any]], message: str) -> None:
    env = make(DynamicEnv, "env", domain="other")
    env.listed = listed
    client = wire({"env": env})
    answer = await client.post("env", "/seed_session", json=ROW)
    assert answer.status_code == 500 and message in answer.json()["error"], answer.text


def test_teardown_runs_when_the_server_stops() -> None:
    from fastapi.testclient import TestClient

    before = DynamicEnv.torn_down
    with TestClient(make(DynamicEnv, "env", domain="other").build_app()) as http:
        assert [t["name"] for t in http.get("/spec").json()["tools"]] == ["static_tool", "lookup", "ping"]
        assert DynamicEnv.torn_down == before
    assert DynamicEnv.torn_down == before + 1
