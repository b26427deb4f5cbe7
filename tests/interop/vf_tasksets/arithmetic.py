"""Tasksets written in verifiers' (0.4, ``verifiers.v1``) style, for tests/interop/test_verifiers.py."""

from __future__ import annotations

import re
from collections.abc import Iterator

import verifiers.v1 as vf


class SumData(vf.TaskData):
    answer: int


class SumTask(vf.Task[SumData, vf.State, vf.TaskConfig]):
    @vf.reward(weight=1.0)
    async def correct(self, task: SumData, trace: vf.Trace) -> float:
        """The last integer of the final reply is the answer (only one integer may appear)."""
        numbers = re.findall(r"-?\d+", trace.last_reply.replace(",", ""))
        return 1.0 if len(numbers) == 1 and int(numbers[0]) == task.answer else 0.0

    @vf.reward(weight=0.5)
    async def used_calculator(self, trace: vf.Trace) -> float:
        """Half a point more for checking with the `add` tool (multi-turn: tool calls in the trace)."""
        return 1.0 if any(call.name == "add" for m in trace.assistant_messages for call in m.tool_calls or []) else 0.0

    @vf.metric
    async def turns(self, trace: vf.Trace) -> float:
        return float(trace.num_turns)


class SumTaskset(vf.Taskset):
    def load(self) -> Iterator[SumTask]:
        for a, b in [(2, 3), (10, 5), (7, 8), (100, 1), (-4, 4)]:
            yield SumTask(SumData(prompt=f"What is {a}+{b}? Answer with the number only.", system_prompt="Be brief.", answer=a + b))


class SandboxTask(SumTask):
    @vf.reward
    async def tests_pass(self, task: SumData, trace: vf.Trace, runtime: vf.Runtime) -> float:
        return 1.0


class SandboxTaskset(vf.Taskset):
    def load(self) -> Iterator[SandboxTask]:
        yield SandboxTask(SumData(prompt="1+1?", answer=2))
