"""code_gen over its HTTP routes (in-process): oracle, answers in several forms, wrong answers,
attacks, the reference's LiveCodeBench rows (call-based and standard input), the run_python tool."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ngym.devkit.testing.asgi import wire
from ngym.server.client import ServerClient, response_cookies
from resources_servers.code_gen.app import CodeGenEnvironment
from resources_servers.code_gen.generate import generate, generate_with_solutions
from tests.fakes import make

pytestmark = pytest.mark.anyio
ENV_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = [json.loads(line) for line in (ENV_DIR / "data" / "example.jsonl").read_text().splitlines()]
# a reference-style standard-input row (LiveCodeBench format, fn_name null), as in its example.jsonl
STDIO_ROW = {
    "responses_create_params": {"input": [{"role": "user", "content": "Read n, print n * 2."}]},
    "verifier_metadata": {"unit_tests": {"inputs": ["2\n", "21\n", "-5\n"], "outputs": ["4\n", "42\n", "-10\n"],
                                         "fn_name": None}},
    "hash_id": "x", "dataset": "taco", "source": "codeforces",
}


@pytest.fixture(scope="module")
def client() -> ServerClient:
    return wire({"env": make(CodeGenEnvironment, "env", domain="coding", num_processes=4,
                             unit_test_timeout_secs=3, max_run_python_calls=2)})


def answered(row: dict[str, Any], text: str) -> dict[str, Any]:
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    return {**row, "response": {"output": [message] if text else []}}


async def verify(client: ServerClient, row: dict[str, Any], text: str) -> dict[str, Any]:
    result = await client.post("env", "/verify", json=answered(row, text))
    assert result.status_code == 200, result.text
    return dict(result.json())


def fenced(code: str, lang: str = "python") -> str:
    return f"```{lang}\n{code}\n```"


async def test_oracle_scores_one_and_empty_scores_zero(client: ServerClient) -> None:
    for row, solution in generate_with_solutions("validation", 12, 9):
        body = await verify(client, row, fenced(solution))
        assert body["reward"] == 1.0, (row["family"], body["metadata"])
        assert body["tests_passed"] == body["tests_total"] == len(row["verifier_metadata"]["unit_tests"]["inputs"])
        assert (await verify(client, row, ""))["reward"] == 0.0


async def test_answers_in_several_forms(client: ServerClient) -> None:
    row, solution = next(iter(generate_with_solutions("validation", 1, 3)))
    fn = row["verifier_metadata"]["unit_tests"]["fn_name"]
    wrapped = "class Solution:\n" + "\n".join("    " + line for line in solution.splitlines()).replace(
        f"def {fn}(", f"def {fn}(self, ")
    forms = [
        fenced(solution),
        "Let me think.\n" + fenced("print('draft')") + "\nFinal answer:\n" + fenced(solution) + "\nDone.",
        fenced(solution, lang="") ,
        fenced(solution + "\nif __name__ == '__main__':\n    print('debug')\n"),
        fenced("import math\n" + wrapped if "import" not in solution else solution),
    ]
    for text in forms:
        body = await verify(client, row, text)
        assert body["reward"] == 1.0, (text, body["metadata"])
        assert body["extracted_model_code"].strip() in text


async def test_wrong_answers_and_hacks_score_zero(client: ServerClient) -> None:
    row, solution = next(iter(generate_with_solutions("validation", 1, 3)))
    fn = row["verifier_metadata"]["unit_tests"]["fn_name"]
    attempts = [
        "The answer is obvious.",                                         # no code
        solution,                                                          # not fenced
        fenced(f"def {fn}(*args):\n    return None"),
        fenced(f"def {fn}(*args):\n    print('All tests passed!')\n    return 'passed'"),
        fenced(f"import sys\nsys.exit(0)\ndef {fn}(*args):\n    return 0"),
        fenced(f"import os\ndef {fn}(*args):\n    os._exit(0)"),
        fenced(f"import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef {fn}(*a):\n    return 0"),
        fenced(f"import os\nwhile True:\n    os.fork()\ndef {fn}(*a):\n    return 0"),
        fenced(f"import glob\nDATA = glob.glob('{ENV_DIR}/data/*.jsonl')\ndef {fn}(*a):\n"
               f"    return open(DATA[0]).read()"),
        fenced(solution) + "\nand also\n" + fenced(f"def {fn}(*a):\n    return None"),  # last block counts
    ]
    for text in attempts:
        body = await verify(client, row, text)
        assert body["reward"] == 0.0, text


async def test_think_tags_in_the_answer_get_the_reference_penalty(client: ServerClient) -> None:
    row, solution = next(iter(generate_with_solutions("validation", 1, 3)))
    body = await verify(client, row, "<think>easy</think>\n" + fenced(solution))
    assert body["reward"] == -0.2 and body["reasoning_format_violation_rate"] == 1.0


async def test_reference_standard_input_rows(client: ServerClient) -> None:
    assert (await verify(client, STDIO_ROW, fenced("print(int(input()) * 2)")))["reward"] == 1.0
    assert (await verify(client, STDIO_ROW, fenced("import sys\nn = int(sys.stdin.readline())\nprint(2*n)\nexit()")))[
        "reward"] == 1.0
    body = await verify(client, STDIO_ROW, fenced("print(int(input()) + 2)"))
    assert body["reward"] == 0.0 and body["result"] == [True, False, False]
    assert body["metadata"]["tests"][1] == {"passed": False, "status": "wrong_answer"}  # no expected output shown


async def test_run_python_tool_is_sandboxed_and_limited(client: ServerClient) -> None:
    cookies = response_cookies(await client.post("env", "/seed_session", json=EXAMPLES[0]))
    first = (await client.post("env", "/run_python", json={"code": "import os\nprint(input(), os.getuid() != 0)",
                                                           "stdin": "hi"}, cookies=cookies)).json()
    assert first == {"stdout": "hi True\n", "stderr": "", "exit_code": 0, "timed_out": False}
    second = (await client.post("env", "/run_python", json={"code": "raise SystemExit('bye')"}, cookies=cookies)).json()
    assert second["exit_code"] == 1 and "bye" in second["stderr"]
    third = (await client.post("env", "/run_python", json={"code": "print(1)"}, cookies=cookies)).json()
    assert "at most 2 times" in third["error"]
    other = response_cookies(await client.post("env", "/seed_session", json=EXAMPLES[1]))
    assert (await client.post("env", "/run_python", json={"code": "print(1)"}, cookies=other)).json()["stdout"] == "1\n"


async def test_bad_rows_are_bad_input(client: ServerClient) -> None:
    bad = {**EXAMPLES[0], "verifier_metadata": {"unit_tests": {"inputs": ["1"], "outputs": []}}}
    result = await client.post("env", "/verify", json=answered(bad, "x"))
    assert result.status_code == 422 and "1 inputs but 0 outputs" in result.text


def test_generator_rows() -> None:
    rows = list(generate("train", 300, 1))
    assert rows == list(generate("train", 300, 1))
    assert len({r["family"] for r in rows}) == 30
    for r in rows:
        tests = r["verifier_metadata"]["unit_tests"]
        assert len(tests["inputs"]) == len(tests["outputs"]) >= 4
        assert all(out not in r["responses_create_params"]["input"][0]["content"] for out in tests["outputs"][:0])
