"""math_with_judge's verifier: equivalent forms rewarded, wrong answers and reward hacks not."""

from __future__ import annotations

import pytest

pytest.importorskip("math_verify")

from resources_servers.math_with_judge.grading import (
    MAX_ANSWER_CHARS,
    boxed_contents,
    final_answer,
    grade,
    strip_math_delimiters,
)


@pytest.mark.parametrize(
    ("gold", "response"),
    [
        ("\\frac{1}{2}", "\\boxed{\\frac{1}{2}}"),
        ("\\frac{1}{2}", "\\boxed{0.5}"),
        ("\\frac{1}{2}", "\\boxed{1/2}"),
        ("\\frac{1}{2}", "\\boxed{\\dfrac{2}{4}}"),
        ("\\frac{1}{2}", "Half of it, so\n\nAnswer: 0.5"),
        ("\\frac{1}{2}", "The answer is $\\frac{1}{2}$."),
        ("0.5", "\\boxed{\\frac12}"),
        ("42", "\\boxed{42}"),
        ("42", "\\boxed{42.0}"),
        ("42", "\\boxed{\\$42}"),
        ("42", "\\boxed{42 \\text{ apples}}"),
        ("42", "**Final Answer:** 42"),
        ("42", "The final answer is 42."),
        ("42", "$\\boxed{42}$"),
        ("42", "Answer: \\boxed{42}"),
        ("42", "\\boxed{42} ... as computed, \\boxed{42}"),  # the same answer twice
        ("1000", "\\boxed{1,000}"),
        ("\\(5\\sqrt{2}\\)", "\\boxed{\\sqrt{50}}"),
        ("5\\sqrt{2}", "\\boxed{5*sqrt(2)}"),
        ("x^2+2x+1", "\\boxed{(x+1)^2}"),
        ("3", "\\boxed{x = 3}"),
        ("2, 3", "\\boxed{3, 2}"),
        ("\\frac{7}{36}", "\\boxed{\\frac{14}{72}}"),
        ("$-4$", "\\boxed{-4}"),
    ],
)
def test_equivalent_forms_are_rewarded(gold: str, response: str) -> None:
    result = grade(response, gold)
    assert result.reward == 1.0, result


@pytest.mark.parametrize(
    ("gold", "response"),
    [
        ("42", "\\boxed{41}"),
        ("\\frac{1}{2}", "\\boxed{\\frac{1}{3}}"),
        ("\\frac{7}{36}", "\\boxed{0.1944}"),  # a rounded decimal is not the fraction
        ("5\\sqrt{2}", "\\boxed{7.07}"),
        ("42", "\\boxed{4,2}"),
        ("42", "\\boxed{-42}"),
    ],
)
def test_wrong_answers_are_not(gold: str, response: str) -> None:
    assert grade(response, gold).reward == 0.0


@pytest.mark.parametrize(
    "response",
    [
        "",
        "42",  # no box and no answer line: no answer (the reference would read the last number)
        "1 2 3 40 41 42",  # a list of guesses
        "\\boxed{41} \\boxed{42} \\boxed{43}",  # spraying boxes: read together as a set
        "\\boxed{\\{41, 42, 43\\}}",
        "Answer: 41 or 42",
        "Answer: either 42 or 43",
        "Answer: maybe 42",
        "Answer:",
        "\\boxed{}",
        "\\boxed{" + "4" * (MAX_ANSWER_CHARS + 1) + "}",
        "Answer: 42?",
        "Answer the question: 42 is what they ask, but I am unsure",  # not a final-answer line
    ],
)
def test_reward_hacks_get_nothing(response: str) -> None:
    assert grade(response, "42").reward == 0.0


def test_the_grade_says_why() -> None:
    hedged = grade("Answer: 41 or 42", "42")
    assert hedged.hedged and hedged.extracted_answer == "41 or 42" and hedged.where == "answer_line"
    spray = grade("\\boxed{41}\\boxed{42}", "42")
    assert spray.extracted_answer == "41, 42" and spray.parsed == "{41, 42}"
    none = grade("I don't know", "42")
    assert none.extracted_answer is None and none.reason is not None and "no final answer" in none.reason
    assert grade("\\boxed{0.5}", "\\frac{1}{2}").to_dict()["parsed"] == "1/2"


def test_unparseable_gold_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="cannot be parsed"):
        grade("\\boxed{1}", "  ")


def test_helpers() -> None:
    assert boxed_contents("a \\boxed{\\frac{1}{2}} b \\fbox{3} \\boxed{x^{2}}") == ["\\frac{1}{2}", "3", "x^{2}"]
    assert boxed_contents("\\boxed{unclosed") == []
    assert [strip_math_delimiters(s) for s in ("\\(x\\)", "\\[x\\]", "$$x$$", "$x$", "x")] == ["x"] * 5
    assert final_answer("work\nAnswer: 7\nmore words") == ("7", "answer_line", False)
