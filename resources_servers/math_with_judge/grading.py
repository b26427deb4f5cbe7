"""math_with_judge's verifier, pure functions: take the final answer of a response and check it for
*mathematical* equivalence with the expected answer using ``math-verify`` (sympy underneath), so
``1/2``, ``0.5``, ``\\frac{1}{2}`` and ``\\dfrac{2}{4}`` all agree.

Where the final answer is (first that applies):

1. every ``\\boxed{...}`` of the response — several boxes are read *together*, as a set, so
   ``\\boxed{3} \\boxed{4}`` does not match ``4`` (spraying answers does not score);
2. else the last line that announces it: ``Answer: ...``, ``Final answer: ...``, ``the answer is ...``.

A response with neither has no answer (reward 0): unlike the reference, we do not take the last
number anywhere in the text, which rewards a list of guesses. A hedged answer (``3 or 4``,
``either 3 or 4``) has no answer either. Answers longer than ``MAX_ANSWER_CHARS`` are refused before
sympy sees them.

``math-verify`` times itself out with ``SIGALRM``, which works only in a process's main thread:
call :func:`grade` in a worker process (the app uses a process pool), or in the main thread.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

MAX_ANSWER_CHARS = 1000
TIMEOUT_S = 5

_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_FINAL_LINE = re.compile(  # "Answer: x", "**Final answer:** x", "Final answer is x" (a colon or "is" needed)
    r"(?i)(?:\*\*)?(?:final\s+answer|answer)(?:\*\*)?\s*(?:is\b\s*[:：]?|[:：])\s*(?:\*\*)?\s*(?P<ans>.*?)\s*$"
)
_ANSWER_IS = re.compile(r"(?i)\b(?:the\s+)?(?:final\s+)?answer\s+is\s*[:：]?\s*(?P<ans>.+?)\s*$")
_HEDGE = re.compile(r"(?i)(?:\bor\b|\beither\b|\bmaybe\b|\bperhaps\b|\bpossibly\b|\?)")
_DELIMS = [(r"\(", r"\)"), (r"\[", r"\]"), ("$$", "$$"), ("$", "$")]


@dataclass(frozen=True, slots=True)
class MathGrade:
    reward: float
    extracted_answer: str | None  # the answer text we read (boxes joined by ", ")
    where: str | None  # boxed | answer_line | None
    hedged: bool = False
    parsed: str | None = None  # math-verify's reading of it
    reason: str | None = None  # why there is no reward when that is not just "not equal"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}``/``\\fbox{...}``, with balanced braces (any depth)."""
    out: list[str] = []
    for m in _BOXED_START.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
            i += 1
        if depth == 0:
            out.append(text[m.end() : i - 1].strip())
    return out


def strip_math_delimiters(answer: str) -> str:
    """``\\(x\\)``, ``\\[x\\]``, ``$$x$$``, ``$x$`` -> ``x`` (the reference strips gold answers so)."""
    s = answer.strip()
    for left, right in _DELIMS:
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            return s[len(left) : len(s) - len(right)].strip()
    return s


def final_answer(text: str) -> tuple[str | None, str | None, bool]:
    """``(answer, where, hedged)`` of a response (see the module docstring)."""
    boxes = [b for b in boxed_contents(text) if b]
    if boxes:
        distinct = list(dict.fromkeys(boxes))
        return ", ".join(distinct), "boxed", False
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        m = _ANSWER_IS.search(line) or _FINAL_LINE.match(line)
        if m is None:
            continue
        answer = strip_math_delimiters(m.group("ans").strip().lstrip(":：").strip().strip("*").rstrip(".").strip())
        if not answer:
            return None, None, False
        return answer, "answer_line", bool(_HEDGE.search(answer))
    return None, None, False


def _parse_gold(expected: str) -> list[Any]:
    from math_verify import LatexExtractionConfig, parse

    gold = strip_math_delimiters(expected)
    parsed = parse(f"\\boxed{{{gold}}}", extraction_config=[LatexExtractionConfig()], parsing_timeout=TIMEOUT_S)
    if not parsed:  # a plain expression (e.g. "sqrt(2)/2")
        parsed = parse(gold, parsing_timeout=TIMEOUT_S)
    return list(parsed)


def _parse_answer(answer: str, where: str) -> list[Any]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    configs = [LatexExtractionConfig(), ExprExtractionConfig()]
    parsed = parse(f"\\boxed{{{answer}}}", extraction_config=configs, parsing_timeout=TIMEOUT_S)
    if not parsed and where != "boxed":
        parsed = parse(answer, extraction_config=configs, parsing_timeout=TIMEOUT_S)
    return list(parsed)


def grade(text: str, expected_answer: str) -> MathGrade:
    """Reward 1.0 iff the response's final answer equals ``expected_answer`` mathematically."""
    from math_verify import verify

    answer, where, hedged = final_answer(text)
    if answer is None or where is None:
        return MathGrade(0.0, None, None, reason="no final answer (\\boxed{...} or an 'Answer:' line)")
    if hedged:
        return MathGrade(0.0, answer, where, hedged=True, reason="hedged: the answer names several candidates")
    if len(answer) > MAX_ANSWER_CHARS:
        return MathGrade(0.0, answer[:100] + "...", where, reason=f"answer longer than {MAX_ANSWER_CHARS} characters")
    gold = _parse_gold(expected_answer)
    if not gold:
        raise ValueError(f"expected_answer {expected_answer!r} cannot be parsed by math-verify")
    target = _parse_answer(answer, where)
    if not target:
        return MathGrade(0.0, answer, where, reason="the answer is not a mathematical expression math-verify reads")
    ok = verify(gold, target, timeout_seconds=TIMEOUT_S)
    return MathGrade(1.0 if ok else 0.0, answer, where, parsed=str(target[0]))
