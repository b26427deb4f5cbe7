"""code_gen: write a Python program graded by hidden unit tests, run in a sandbox.

Rows are the reference's (LiveCodeBench format): ``verifier_metadata.unit_tests = {inputs, outputs,
fn_name?}``; with ``fn_name`` the function is called on each input, without it the program reads the
input on stdin. The answer is the last fenced code block of the final text. Reward 1.0 iff every
hidden test passes; 0.0 otherwise (no code, a wrong answer, an error, a time-out); the reference's
``reasoning_format_penalty`` when ``<think>`` tags leak into the answer. Unlike the reference, the
code runs in a sandbox (code_sandbox.py): separate processes, namespaces (no network, private /tmp,
the data hidden), its own unprivileged uid, resource limits and a deadline; the expected outputs
never enter it. The ``run_python`` tool runs code in the same sandbox before answering.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ngym.env import EnvConfig, Environment, ToolError, Verdict, VerifierError, run_blocking, tool
from ngym.wire.responses import Reasoning, Response
from resources_servers.code_gen.code_sandbox import Sandbox, SandboxConfig, SandboxError
from resources_servers.code_gen.grading import UnitTests, extract_code, grade, job_for

HERE = Path(__file__).resolve().parent


class VerifierMetadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    unit_tests: UnitTests


class CodeTask(BaseModel):
    verifier_metadata: VerifierMetadata


class CodeState(BaseModel):
    run_python_calls: int = 0


class CodeGenConfig(EnvConfig):
    #: sandboxes running at once (the reference's key)
    num_processes: int = Field(8, ge=1)
    #: seconds per hidden test (the reference's key); the whole run gets tests x this, at most 60 s
    unit_test_timeout_secs: float = Field(10, gt=0)
    debug: bool = False
    #: reward when <think> tags leak into the final answer (the reference's key)
    reasoning_format_penalty: float = -0.2
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    run_python_timeout_s: float = Field(10, gt=0)
    max_run_python_calls: int = Field(20, ge=0)
    max_run_python_output: int = Field(4000, ge=100, description="characters of stdout/stderr shown to the model")


class RunPythonResult(BaseModel):
    stdout: str
    stderr: str
    exit_code: int | None
    timed_out: bool


def _format_violation(response: Response) -> bool:
    """The reference's rule: think tags in the final answer, or more than one of each in the reasoning."""
    final = response.output_text()
    if "<think>" in final or "</think>" in final:
        return True
    reasoning = "".join(s.text for item in response.output if isinstance(item, Reasoning) for s in item.summary)
    return reasoning.count("<think>") > 1 or reasoning.count("</think>") > 1


class CodeGenEnvironment(Environment[CodeTask, CodeState]):
    config: CodeGenConfig

    async def setup(self) -> None:
        settings = self.config.sandbox.model_copy()
        settings.max_concurrent = self.config.num_processes
        # the project (with this environment's data and tests) stays out of sight wherever it is
        settings.hide_paths = [*settings.hide_paths, str(HERE.parents[1])]
        try:
            self.sandbox = await run_blocking(Sandbox, settings)
        except SandboxError as e:
            raise VerifierError(f"{self.config.name}: {e}") from e

    @tool
    async def run_python(self, code: str, stdin: str = "") -> RunPythonResult:
        """Run a Python program in a sandbox (no network, standard library only) and see its output.

        Args:
            code: The complete program.
            stdin: Text given to the program on standard input.
        """
        if self.state.run_python_calls >= self.config.max_run_python_calls:
            raise ToolError(f"run_python may be called at most {self.config.max_run_python_calls} times per task")
        self.state.run_python_calls += 1
        job = {"mode": "stdio", "code": code, "inputs": [stdin], "stderr": True,
               "per_test_timeout": self.config.run_python_timeout_s}
        result = await run_blocking(self.sandbox.run, job, self.config.run_python_timeout_s + 5)
        record = result.records.get(0, {})
        limit = self.config.max_run_python_output
        return RunPythonResult(
            stdout=str(record.get("stdout", ""))[:limit],
            stderr=str(record.get("stderr", record.get("error", "")))[-limit:],
            exit_code=record.get("exit_code"),
            timed_out=record.get("status") == "timeout" or result.timed_out,
        )

    async def verify(self, response: Response) -> Verdict:
        text = response.output_text()
        tests = self.task.verifier_metadata.unit_tests
        code = extract_code(text) if text.strip() else None
        if code is None:
            return Verdict(reward=0.0, extracted_model_output=text or None, extracted_model_code=None,
                           result=[], tests_passed=0, tests_total=len(tests.inputs))
        timeout = self.config.unit_test_timeout_secs
        deadline = min(60.0, timeout * len(tests.inputs)) + 5
        try:
            run = await run_blocking(self.sandbox.run, job_for(tests, code, timeout), deadline)
        except SandboxError as e:
            raise VerifierError(f"{self.config.name}: the sandbox could not run the code: {e}") from e
        outcomes = grade(tests, run)
        passed = sum(o.passed for o in outcomes)
        violation = _format_violation(response)
        reward = self.config.reasoning_format_penalty if violation else float(passed == len(outcomes))
        metadata: dict[str, Any] = {"tests": [o.model_dump(exclude_none=True) for o in outcomes],
                                    "sandbox": run.isolation, "timed_out": run.timed_out}
        if self.config.debug:
            metadata["stderr"] = run.stderr[-2000:]
        return Verdict(
            reward=reward,
            extracted_model_output=text,
            extracted_model_code=code,
            result=[o.passed for o in outcomes],
            tests_passed=passed,
            tests_total=len(outcomes),
            metadata=metadata,
            unit_tests_time_taken=round(run.seconds, 4),
            reasoning_format_violation_rate=1.0 if violation else 0.0,
        )


if __name__ == "__main__":
    CodeGenEnvironment.run_webserver()
