"""Every checker: a response that follows the instruction and one that does not (several where the
rule has edges), the reference's keyword arguments, and the errors for rows we cannot check."""

from __future__ import annotations

from typing import Any

import pytest

from resources_servers.instruction_following.checkers import REGISTRY, InstructionError, check, sentences, words
from resources_servers.instruction_following.grading import grade

LOREM = "The river runs north. It feeds the old mill. Farmers rely on it every spring."

# (instruction id, kwargs, a response that follows it, responses that do not)
CASES: list[tuple[str, dict[str, Any] | None, str, list[str]]] = [
    ("keywords:existence", {"keywords": ["river", "mill"]}, "The River turns the mill.", ["The river is wide.", "rivers and mills"]),
    ("keywords:frequency", {"keyword": "tea", "frequency": 3, "relation": "at least"}, "Tea, tea and more TEA.", ["Tea and tea.", "teapot teapot teapot"]),
    ("keywords:frequency", {"keyword": "tea", "frequency": 2, "relation": "less than"}, "One tea please.", ["tea tea"]),
    ("keywords:forbidden_words", {"forbidden_words": ["part", "inevitable"]}, "A partial view; departure.", ["It was Inevitable.", "part of it"]),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 2, "let_relation": "at least"}, "Zebras zigzag.", ["A zebra."]),
    ("keywords:word_once", {"keyword": "moon"}, "The moon rose.", ["No satellite.", "moon and Moon"]),
    ("keywords:start_end", None, "Rain falls and falls like rain", ["Rain falls.", "Rain falls like rain.", "Rain"]),
    ("language:response_language", {"language": "fr"}, "Je pense que le fleuve est très beau et que la ville est calme ce matin.", ["I think the river is very beautiful and the city is calm this morning."]),
    ("language:response_language", {"language": "de"}, "Der Fluss ist sehr schön und die Stadt ist heute Morgen ruhig.", ["El río es muy bonito y la ciudad está tranquila esta mañana."]),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "at least"}, LOREM, ["One. Two."]),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}, "Dr. Smith met Mr. Jones at 5 p.m. today. They talked.", [LOREM]),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First part.\n***\nSecond part.", ["First.\n\nSecond.", "A\n***\nB\n***\nC", "A\n***\n\n***\nB", "***\nA\n***\nB"]),
    ("length_constraints:number_words", {"num_words": 5, "relation": "less than"}, "Just four words here.", ["Now there are five words."]),
    ("length_constraints:number_words", {"num_words": 5, "relation": "at least"}, "Now there are five words.", [""]),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "crash"}, "Intro.\n\n**Crash** came next.\n\nEnd.", ["Intro.\n\nThen crash.\n\nEnd.", "Intro.\n\nCrash."]),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", ["Dear [name].", "Dear [ ] and []"[:0] + "Dear []."]),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Hello.\n\nP.S. Bring tea.", ["Hello. P.S. inline only", "Hello."]),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Hi.\nP.P.S. More.", ["Hi.\nP.S. Less."]),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "List:\n* one\n- two", ["* one\n* two\n* three", "* one", "*bold* text"]),
    ("detectable_format:constrained_response", None, "My answer is no.", ["No.", "My answer is yes. My answer is no."]),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and **two**", ["*one* only", "** ** and * *"]),
    ("detectable_format:multiple_sections", {"section_spliter": "SECTION", "num_sections": 2}, "SECTION 1\nIntro\nSECTION 2\nBody", ["SECTION 1\nAll of it", "Section one, section two"]),
    ("detectable_format:json_format", None, '```json\n{"a": 1}\n```', ['{"a": 1', "Here: {\"a\": 1}"]),
    ("detectable_format:title", None, "<<My Title>>\nText", ["<<>>\nText", "My Title\nText"]),
    ("detectable_format:square_brackets", None, "[Every] [word] [here]", ["[Every] word", ""]),
    ("combination:two_responses", None, "Answer one.\n******\nAnswer two.", ["Same.\n******\nSame.", "Only one.", "A\n******\nB\n******\nC"]),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem."}, "Write a poem. Roses are red.", ["Roses are red. Write a poem."]),
    ("startend:end_checker", {"end_phrase": "Is there anything else I can help with?"}, "Done. Is there anything else I can help with?", ["Is there anything else I can help with? Done."]),
    ("startend:quotation", None, '"Wrapped in quotes."', ['"Only at the start.', "No quotes"]),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"}, "This is VERY VERY loud.", ["This is VERY loud."]),
    ("change_case:english_capital", None, "THIS IS ALL IN CAPITAL LETTERS AND IN ENGLISH, AS ASKED.", ["This is not all capitals at all, as you can see here.", "ESTO ESTÁ TODO EN MAYÚSCULAS PERO ESCRITO EN ESPAÑOL Y NO EN INGLÉS."]),
    ("change_case:english_lowercase", None, "this is all in lowercase letters and in english, as asked.", ["This starts with a capital letter, which is not allowed here."]),
    ("punctuation:no_comma", None, "No commas here.", ["One, two."]),
    ("punctuation:punctuation_dot", None, "No dots here!", ["A dot."]),
    ("punctuation:punctuation_exclamation", None, "Calm.", ["Wow!"]),
    ("first_word:first_word_answer", {"first_word": "relationship"}, "Relationship: it matters.", ["A relationship matters."]),
    ("first_word:first_word_sent", {"first_word": "we"}, "We run. We swim! we rest?", ["We run. They swim."]),
    ("last_word:last_word_answer", {"last_word": "contest"}, "It was a close Contest.", ["The contest was close."]),
    ("last_word:last_word_sent", {"last_word": "now"}, "Go now. Stop now!", ["Go now. Stop later."]),
    ("count:lowercase_counting", {"N": 2}, "the cat and the dog", ["the cat and the dog and the bird"]),
    ("letters:letter_counting", {"N": 10, "relation": "at least"}, "abcde fghij", ["abc 123"]),
    ("letters:letter_counting", {"N": 10, "relation": "less than"}, "abc 123", ["abcde fghij"]),
    ("paragraphs:paragraphs", {}, "One.\n***\nTwo.", ["One.\n\nTwo.", "One.\n***\nTwo.\n***\nThree."]),
    ("paragraphs:paragraphs2", {}, "One.\n\nTwo.", ["One.\n***\nTwo.", "One.\n\nTwo.\n\nThree."]),
]


@pytest.mark.parametrize(("instruction_id", "kwargs", "good", "bad"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_checker(instruction_id: str, kwargs: dict[str, Any] | None, good: str, bad: list[str]) -> None:
    ok, detail = check(instruction_id, good, kwargs)
    assert ok, detail
    for text in bad:
        ok, detail = check(instruction_id, text, kwargs)
        assert not ok, (text, detail)


def test_every_registered_id_is_tested() -> None:
    assert {c[0] for c in CASES} == set(REGISTRY)
    assert len(REGISTRY) >= 30


def test_argument_errors_name_the_instruction() -> None:
    with pytest.raises(InstructionError, match="unknown instruction id 'made:up'"):
        check("made:up", "x", {})
    with pytest.raises(InstructionError, match=r"missing \['keywords'\]"):
        check("keywords:existence", "x", {})
    with pytest.raises(InstructionError, match=r"unknown \['extra'\]"):
        check("punctuation:no_comma", "x", {"extra": 1})
    with pytest.raises(InstructionError, match="relation must be one of"):
        check("length_constraints:number_words", "x", {"num_words": 3, "relation": "about"})
    # null keyword arguments are ignored, as in the reference's rows
    assert check("punctuation:no_comma", "x", {"num_words": None})[0]


def test_grade_binary_fraction_and_reference_row() -> None:
    # the reference's example row 1: four paragraphs, the third starting with "crash", last word "contest"
    ids = ["length_constraints:nth_paragraph_first_word", "last_word:last_word_answer"]
    kwargs: list[dict[str, Any] | None] = [{"num_paragraphs": 4, "nth_paragraph": 3, "first_word": "crash"}, {"last_word": "contest"}]
    good = "Oliver wakes.\n\nHe remembers.\n\nCrash of waves.\n\nHe enters the contest"
    assert grade(good, ids, kwargs).reward == 1.0
    half = grade("Oliver wakes.\n\nHe remembers.\n\nCrash of waves.\n\nHe leaves", ids, kwargs, "fraction")
    assert half.reward == 0.5 and half.follow_instruction_list == [True, False] and not half.follow_all_instructions
    assert grade("Oliver wakes.\n\nHe leaves", ids, kwargs, "binary").reward == 0.0
    assert "last word 'leaves'" in half.details[1].detail


def test_empty_response_follows_nothing() -> None:
    result = grade("  ", ["punctuation:no_comma", "punctuation:punctuation_dot"], [None, None], "fraction")
    assert result.reward == 0.0 and result.details[0].detail == "empty response"


def test_grade_errors() -> None:
    with pytest.raises(InstructionError, match="pair up"):
        grade("x", ["punctuation:no_comma"], [])
    with pytest.raises(InstructionError, match="empty"):
        grade("x", [], [])
    with pytest.raises(InstructionError, match="unknown instruction"):
        grade("", ["nope:nope"], [None])


def test_text_helpers() -> None:
    assert words("It's 5 o'clock, Dr. Who!") == ["It", "s", "5", "o", "clock", "Dr", "Who"]
    assert sentences("Dr. Smith arrived at 5 p.m. today. He left! Did he?\n\n* a bullet") == [
        "Dr. Smith arrived at 5 p.m. today.", "He left!", "Did he?", "* a bullet"]
