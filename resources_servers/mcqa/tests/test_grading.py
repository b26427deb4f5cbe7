"""mcqa's verifier: right answers in several forms, wrong answers, hedges and format tricks."""

from __future__ import annotations

import pytest

from resources_servers.mcqa.grading import GradingMode, boxed_contents, extract, grade, option_letters

OPTIONS: list[dict[str, str | None]] = [
    {"A": "Karyotyping"},
    {"B": "Polymerase Chain Reaction (PCR)"},
    {"C": "Whole-genome sequencing"},
    {"D": "Chromosome painting"},
]


def reward(text: str, mode: GradingMode = "strict_single_letter_boxed", gold: str = "B", regex: str | None = None) -> float:
    return grade(text, OPTIONS, gold, mode, regex)[0]


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{B}",
        "Thinking... PCR amplifies the locus.\n\n\\boxed{B}",
        "\\boxed{ (B) }",
        "\\boxed{\\text{B}}",
        "\\boxed{\\textbf{B}}",
        "The answer is \\boxed{B}. Indeed \\boxed{B}.",  # repeated, same letter
    ],
)
def test_strict_accepts_a_boxed_letter(text: str) -> None:
    assert reward(text) == 1.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "B",  # not boxed: strict needs the box
        "\\boxed{b}",  # strict: uppercase only
        "\\boxed{A}",
        "\\boxed{Polymerase Chain Reaction (PCR)}",  # option text is lenient_boxed's
        "\\boxed{A} \\boxed{B} \\boxed{C} \\boxed{D}",  # spraying
        "\\boxed{A} ... no wait \\boxed{B}",  # two different letters: hedged
        "\\boxed{A or B}",
        "\\boxed{AB}",
        "\\boxed{E}",  # not an option
        "Answer: B",
    ],
)
def test_strict_rejects(text: str) -> None:
    assert reward(text) == 0.0


def test_hedge_is_reported() -> None:
    found = extract("\\boxed{A} \\boxed{B}", OPTIONS)
    assert found.letter is None and found.hedged and found.candidates == ("A", "B")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{B}", 1.0),
        ("\\boxed{Polymerase Chain Reaction (PCR)}", 1.0),
        ("\\boxed{\\text{polymerase chain reaction (pcr)}}", 1.0),
        ("\\boxed{B: Polymerase  Chain Reaction (PCR)}", 1.0),
        ("\\boxed{Karyotyping}", 0.0),
        ("\\boxed{Karyotyping or Polymerase Chain Reaction (PCR)}", 0.0),  # two options' text: no unique match
        ("\\boxed{PCR}", 0.0),  # not an option's full text
        ("Polymerase Chain Reaction (PCR)", 0.0),  # outside the box
    ],
)
def test_lenient_boxed(text: str, expected: float) -> None:
    assert reward(text, "lenient_boxed") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Reasoning here.\nAnswer: B", 1.0),
        ("answer: b", 1.0),
        ("Answer: (B)", 1.0),
        ("Answer: **B**", 1.0),
        ("Answer: B.", 1.0),
        ("Answer: \\boxed{B}", 1.0),
        ("Answer: Polymerase Chain Reaction (PCR)", 1.0),
        ("Answer: A", 0.0),
        ("Answer: A\nAnswer: B", 0.0),  # hedged
        ("Answer: B or C", 0.0),
        ("Answer: Karyotyping", 0.0),
        ("B", 0.0),
        ("\\boxed{B}", 0.0),  # this mode reads only Answer:
    ],
)
def test_lenient_answer_colon(text: str, expected: float) -> None:
    assert reward(text, "lenient_answer_colon") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{b}", 1.0),
        ("Answer: B", 1.0),
        ("PCR targets the mutation.\n\nB", 1.0),
        ("PCR targets the mutation.\n(B)", 1.0),
        ("PCR targets the mutation.\n**B.**", 1.0),
        ("So the answer is B.", 1.0),
        ("So the answer is (B)", 1.0),
        ("I think it's B", 0.0),  # no form we read
        ("A\nB\nC\nD\nB", 1.0),  # last line is what counts here...
        ("Answer: A\n\nB", 0.0),  # ...but an explicit Answer: wins over the last line
        ("\\boxed{A}\n\\boxed{b}", 0.0),  # hedged
        ("ABCD", 0.0),
    ],
)
def test_lenient(text: str, expected: float) -> None:
    assert reward(text, "lenient") == expected


def test_template_regex_first_then_the_mode() -> None:
    regex = "\\\\boxed\\{\\s*([A-Za-z])\\s*\\}"
    assert reward("Answer: \\boxed{b}", regex=regex) == 1.0  # case-insensitive
    assert reward("\\boxed{B} so Answer: \\boxed{B}", regex=regex) == 1.0
    assert reward("\\boxed{A} then Answer: \\boxed{B}", regex=regex) == 0.0  # hedged (the reference takes the last)
    assert reward("\\boxed{E}", regex=regex) == 0.0  # not an option
    assert reward("\\boxed{B}", regex="(") == 1.0  # an invalid regex: the mode decides
    found = extract("final: B", OPTIONS, output_regex=r"final:\s*(\w)")
    assert found.letter == "B" and found.rule == "template_regex"


def test_gold_case_and_empty_gold() -> None:
    assert reward("\\boxed{B}", gold=" b ") == 1.0
    assert reward("\\boxed{B}", gold="") == 0.0


def test_helpers() -> None:
    assert option_letters([{"a": "x"}, {"B": None}, {"C": "z"}]) == {"A": "x", "C": "z"}
    assert boxed_contents("\\boxed{\\frac{1}{2}} and \\boxed{\\text{C}}") == ["\\frac{1}{2}", "C"]
