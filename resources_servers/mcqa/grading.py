"""mcqa's verifier, pure functions: find the answer letter in a response, in the reference's grading
modes plus one lenient mode, and refuse answers that spray several letters.

Modes (a row's ``grading_mode``):

* ``strict_single_letter_boxed`` (the reference's default): ``\\boxed{B}`` — one uppercase option
  letter in the box, optionally with non-letters around it (``\\boxed{(B)}``) or in ``\\text{}``.
* ``lenient_boxed``: strict, else the box holds the text of exactly one option.
* ``lenient_answer_colon``: ``Answer: B`` (any case, ``(B)``, ``**B**``, ``B.``), or ``Answer:``
  followed by exactly one option's text.
* ``lenient`` (ours): boxed letter or option text, else ``Answer:``, else a last line that is only a
  letter (``B``, ``(B)``, ``**B.**``), else a closing "the answer is B".

A row's ``template_metadata.output_regex`` (the reference's custom regex) is tried first,
case-insensitive; when it finds nothing the mode decides. Whatever the rule, a response naming *different* letters in the places
that rule reads (``\\boxed{A} \\boxed{B}``, two ``Answer:`` lines that disagree) is *hedged*: no
letter, reward 0. (The reference takes the first box; we refuse the spray.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

GradingMode = Literal["strict_single_letter_boxed", "lenient_boxed", "lenient_answer_colon", "lenient"]
GRADING_MODES: tuple[GradingMode, ...] = (
    "strict_single_letter_boxed",
    "lenient_boxed",
    "lenient_answer_colon",
    "lenient",
)

_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*)\}", re.S)
_TEXT_WRAP = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|texttt)\s*\{(.*)\}$", re.S)
_STRICT_INNER = re.compile(r"^[^A-Za-z]*([A-Z])[^A-Za-z]*$")
_ANSWER_COLON = re.compile(r"(?i)\banswer\s*[:：]\s*(.+)")
_BARE_LETTER = re.compile(r"^[\s*_`(\[{]*(?:option\s+|choice\s+)?([A-Za-z])[\s*_`)\]}.:]*$", re.I)
_ANSWER_IS = re.compile(r"(?i)\b(?:answer|option|choice)\s+is\s*[:\s]\s*[*_(\[]*([A-Za-z])[*_)\]]*[.!]?\s*$")


@dataclass(frozen=True, slots=True)
class Extraction:
    """The letter found (None: no answer, or a hedged one) and how it was found."""

    letter: str | None
    rule: str | None = None  # template_regex | boxed | boxed_option_text | answer_colon | ... | None
    hedged: bool = False
    candidates: tuple[str, ...] = ()  # the distinct letters a hedged response named


def option_letters(options: list[dict[str, str | None]] | None) -> dict[str, str]:
    """``{letter: text}`` of the row's options (single-key dicts; null values left out)."""
    out: dict[str, str] = {}
    for entry in options or []:
        for key, value in entry.items():
            if isinstance(key, str) and len(key) == 1 and key.isalpha() and value is not None:
                out[key.upper()] = value
    return out


def normalize(text: str) -> str:
    """Lower case, whitespace collapsed, surrounding punctuation and markdown dropped."""
    return " ".join(text.lower().split()).strip(" .*_`\"'")


def _unwrap(inner: str) -> str:
    inner = inner.strip()
    while (m := _TEXT_WRAP.match(inner)) is not None:
        inner = m.group(1).strip()
    return inner


def boxed_contents(text: str) -> list[str]:
    """Contents of every ``\\boxed{...}`` (nested braces allowed), ``\\text{}`` wrappers removed."""
    return [_unwrap(m.group(1)) for m in _BOXED.finditer(text)]


def _option_by_text(candidate: str, options: dict[str, str], *, contains: bool) -> str | None:
    """The one option whose text equals (or, with ``contains``, occurs in) ``candidate``."""
    cand = normalize(candidate)
    if not cand:
        return None
    hits = {
        letter
        for letter, option in options.items()
        if (norm := normalize(option)) and (norm in cand if contains else norm == cand)
    }
    return hits.pop() if len(hits) == 1 else None


def _agree(found: list[str], rule: str) -> Extraction | None:
    """One letter if all ``found`` agree; a hedged extraction if they differ; None if empty."""
    distinct = tuple(dict.fromkeys(found))
    if not distinct:
        return None
    if len(distinct) > 1:
        return Extraction(None, rule, hedged=True, candidates=distinct)
    return Extraction(distinct[0], rule)


def _letter_of(candidate: str, options: dict[str, str], *, any_case: bool) -> str | None:
    m = _BARE_LETTER.match(candidate)
    if m is None:
        return None
    letter = m.group(1)
    if not any_case and not letter.isupper():
        return None
    letter = letter.upper()
    return letter if letter in options or not options else None


def _from_boxes(text: str, options: dict[str, str], *, option_text: bool, any_case: bool) -> Extraction | None:
    letters: list[str] = []
    by_text = False
    for inner in boxed_contents(text):
        m = _STRICT_INNER.match(inner)
        letter = m.group(1) if m else None
        if letter is None and any_case:
            letter = _letter_of(inner, options, any_case=True)
        if letter is not None and (letter in options or not options):
            letters.append(letter)
            continue
        if option_text and (found := _option_by_text(inner, options, contains=True)) is not None:
            letters.append(found)
            by_text = True
    return _agree(letters, "boxed_option_text" if by_text else "boxed")


def _from_answer_colon(text: str, options: dict[str, str]) -> Extraction | None:
    letters: list[str] = []
    for m in _ANSWER_COLON.finditer(text):
        candidate = m.group(1).strip()
        boxes = boxed_contents(candidate)
        if boxes:
            candidate = boxes[-1]
        candidate = _unwrap(candidate)
        letter = _letter_of(candidate, options, any_case=True)
        if letter is None:
            letter = _option_by_text(candidate, options, contains=False)
        if letter is not None:
            letters.append(letter)
    return _agree(letters, "answer_colon")


def _from_last_line(text: str, options: dict[str, str]) -> Extraction | None:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1].strip()
    letter = _letter_of(last, options, any_case=False)
    if letter is not None:
        return Extraction(letter, "last_line")
    m = _ANSWER_IS.search(last)
    if m is not None and (m.group(1).upper() in options or not options) and m.group(1).isupper():
        return Extraction(m.group(1).upper(), "answer_is")
    return None


def _from_regex(text: str, pattern: str, options: dict[str, str]) -> Extraction | None:
    try:
        matches = re.findall(pattern, text, re.IGNORECASE)
    except re.error:
        return None
    letters: list[str] = []
    for match in matches:
        captured = (match[0] if isinstance(match, tuple) and match else str(match)).strip()
        if len(captured) == 1 and captured.isalpha():
            if captured.upper() in options or not options:
                letters.append(captured.upper())
        elif (found := _option_by_text(captured, options, contains=False)) is not None:
            letters.append(found)
    return _agree(letters, "template_regex")


def extract(
    text: str,
    options: list[dict[str, str | None]] | None,
    mode: GradingMode = "strict_single_letter_boxed",
    output_regex: str | None = None,
) -> Extraction:
    """The answer letter of ``text`` under ``mode`` (see the module docstring)."""
    letters = option_letters(options)
    if output_regex:
        found = _from_regex(text, output_regex, letters)
        if found is not None:
            return found
    attempts: list[Extraction | None]
    if mode == "strict_single_letter_boxed":
        attempts = [_from_boxes(text, letters, option_text=False, any_case=False)]
    elif mode == "lenient_boxed":
        attempts = [_from_boxes(text, letters, option_text=True, any_case=False)]
    elif mode == "lenient_answer_colon":
        attempts = [_from_answer_colon(text, letters)]
    else:
        attempts = [
            _from_boxes(text, letters, option_text=True, any_case=True),
            _from_answer_colon(text, letters),
            _from_last_line(text, letters),
        ]
    for attempt in attempts:
        if attempt is not None:  # a hedged rule stops here: no falling through to a weaker rule
            return attempt
    return Extraction(None)


def grade(
    text: str,
    options: list[dict[str, str | None]] | None,
    expected_answer: str,
    mode: GradingMode = "strict_single_letter_boxed",
    output_regex: str | None = None,
) -> tuple[float, Extraction]:
    """Reward 1.0 iff the extracted letter is the expected one (case-insensitive gold)."""
    found = extract(text, options, mode, output_regex)
    gold = expected_answer.strip().upper()
    return (1.0 if gold and found.letter == gold else 0.0), found
