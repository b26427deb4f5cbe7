"""instruction_following's checkers: one pure function per instruction id, our own code, in the style
of IFEval and IFBench. The ids and keyword arguments are those of the reference's rows (IFEval's
25 and the IFBench ids its data uses), so a user's existing dataset runs unchanged.

Each checker takes the response text and the row's keyword arguments for that instruction and
returns ``(followed, detail)``; ``detail`` says what was counted, so a person can see why.
Unknown keyword arguments, missing ones and unknown ids raise :class:`InstructionError` (the
environment turns that into a typed failure, never a silent 0).
"""

from __future__ import annotations

import inspect
import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

Result = tuple[bool, str]
Checker = Callable[..., Result]
RELATIONS = ("less than", "at least")


class InstructionError(ValueError):
    """An instruction the checkers cannot evaluate: unknown id, missing or unknown keyword argument."""


# ---- text helpers --------------------------------------------------------------------------------

_WORD = re.compile(r"\w+", re.UNICODE)
_ABBREVIATIONS = ("mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "etc", "e.g", "i.e", "inc", "ltd", "no")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=\S)")


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def sentences(text: str) -> list[str]:
    """Sentences: split after ``.``/``!``/``?`` followed by space, not after common abbreviations,
    dotted ones (``p.m.``) or single initials; a blank line or a list item starts a new sentence."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=\s*[*\-•]|\s*\d+[.)]\s)", text):
        start = 0
        for m in _SENTENCE_END.finditer(block):
            before = block[start : m.start()].rstrip("\"')]")
            last = before.split()[-1].lower().rstrip(".!?") if before.split() else ""
            dotted = "." in last  # p.m., e.g., U.S.
            if before.endswith(".") and (last in _ABBREVIATIONS or dotted or (len(last) == 1 and last.isalpha())):
                continue
            out.append(block[start : m.start()].strip())
            start = m.end()
        out.append(block[start:].strip())
    return [s for s in out if s and _WORD.search(s)]


def compare(count: int, relation: str, n: int) -> bool:
    if relation == "less than":
        return count < n
    if relation == "at least":
        return count >= n
    raise InstructionError(f"relation must be one of {RELATIONS}, got {relation!r}")


def _strip_word(word: str) -> str:
    return re.sub(r"[^\w]", "", word).lower()


def _language_of(text: str) -> str | None:
    from langdetect import DetectorFactory, LangDetectException, detect

    DetectorFactory.seed = 0  # langdetect is random without a seed
    try:
        return str(detect(text))
    except LangDetectException:
        return None


# ---- keywords --------------------------------------------------------------------------------------


def _occurrences(text: str, keyword: str) -> int:
    return len(re.findall(r"(?<!\w)" + re.escape(keyword.strip()) + r"(?!\w)", text, flags=re.IGNORECASE))


def keywords_existence(text: str, keywords: list[str]) -> Result:
    missing = [k for k in keywords if _occurrences(text, k) == 0]
    return not missing, f"missing {missing}" if missing else f"all of {keywords} present"


def keywords_frequency(text: str, keyword: str, frequency: int, relation: str) -> Result:
    n = _occurrences(text, keyword)
    return compare(n, relation, frequency), f"{keyword!r} occurs {n} times (needs {relation} {frequency})"


def keywords_forbidden_words(text: str, forbidden_words: list[str]) -> Result:
    found = [w for w in forbidden_words if _occurrences(text, w)]
    return not found, f"forbidden words used: {found}" if found else "no forbidden word"


def keywords_letter_frequency(text: str, letter: str, let_frequency: int, let_relation: str) -> Result:
    n = text.lower().count(letter.lower())
    return compare(n, let_relation, let_frequency), f"letter {letter!r} occurs {n} times (needs {let_relation} {let_frequency})"


def keywords_word_once(text: str, keyword: str) -> Result:
    n = _occurrences(text, keyword)
    return n == 1, f"{keyword!r} occurs {n} times (needs exactly 1)"


def keywords_start_end(text: str) -> Result:
    ws = [_strip_word(w) for w in text.split()]
    ws = [w for w in ws if w]
    ok = len(ws) >= 2 and ws[0] == ws[-1] and not re.search(r"[^\w\s]\s*$", text.strip()[-1:])
    return ok, f"first word {ws[0] if ws else None!r}, last word {ws[-1] if ws else None!r}"


# ---- language and case ---------------------------------------------------------------------------


def language_response_language(text: str, language: str) -> Result:
    found = _language_of(text)
    return found == language, f"detected language {found!r} (needs {language!r})"


def change_case_english_capital(text: str) -> Result:
    lang = _language_of(text)
    ok = bool(text.strip()) and text.isupper() and lang == "en"
    return ok, f"all capitals: {text.isupper()}, language {lang!r}"


def change_case_english_lowercase(text: str) -> Result:
    lang = _language_of(text)
    ok = bool(text.strip()) and text.islower() and lang == "en"
    return ok, f"all lowercase: {text.islower()}, language {lang!r}"


def change_case_capital_word_frequency(text: str, capital_frequency: int, capital_relation: str) -> Result:
    n = sum(1 for w in words(text) if w.isupper())
    return compare(n, capital_relation, capital_frequency), f"{n} all-capital words (needs {capital_relation} {capital_frequency})"


def count_lowercase_counting(text: str, N: int) -> Result:
    counts = Counter(re.findall(r"\b[a-z]+\b", text))
    over = sorted(w for w, c in counts.items() if c > N)
    return not over, f"lowercase words used more than {N} times: {over[:10]}" if over else f"none more than {N} times"


def letters_letter_counting(text: str, N: int, relation: str) -> Result:
    n = len(re.findall(r"[a-zA-Z]", text))
    return compare(n, relation, N), f"{n} letters (needs {relation} {N})"


# ---- length ----------------------------------------------------------------------------------------


def length_number_sentences(text: str, num_sentences: int, relation: str) -> Result:
    n = len(sentences(text))
    return compare(n, relation, num_sentences), f"{n} sentences (needs {relation} {num_sentences})"


def length_number_words(text: str, num_words: int, relation: str) -> Result:
    n = len(words(text))
    return compare(n, relation, num_words), f"{n} words (needs {relation} {num_words})"


def _divider_paragraphs(text: str) -> list[str] | None:
    """Paragraphs separated by the markdown divider ``***``; None if one of them is empty."""
    parts = re.split(r"\s?\*\*\*\s?", text.strip())
    if any(not p.strip() for p in parts):
        return None
    return parts


def length_number_paragraphs(text: str, num_paragraphs: int) -> Result:
    parts = _divider_paragraphs(text)
    n = len(parts) if parts is not None else 0
    return n == num_paragraphs, f"{n if parts is not None else 'an empty'} paragraph(s) between *** dividers (needs {num_paragraphs})"


def _blank_line_paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def length_nth_paragraph_first_word(text: str, num_paragraphs: int, nth_paragraph: int, first_word: str) -> Result:
    parts = _blank_line_paragraphs(text)
    if len(parts) != num_paragraphs:
        return False, f"{len(parts)} paragraphs separated by blank lines (needs {num_paragraphs})"
    if not 1 <= nth_paragraph <= len(parts):
        return False, f"paragraph {nth_paragraph} does not exist"
    head = parts[nth_paragraph - 1].split()
    got = _strip_word(head[0]) if head else ""
    return got == first_word.lower(), f"paragraph {nth_paragraph} starts with {got!r} (needs {first_word.lower()!r})"


def paragraphs_paragraphs(text: str) -> Result:
    parts = _divider_paragraphs(text)
    n = len(parts) if parts is not None else 0
    return n == 2, f"{n} paragraph(s) between *** dividers (needs 2)"


def paragraphs_paragraphs2(text: str) -> Result:
    parts = re.split(r"\n\n", text.strip())
    ok = len(parts) == 2 and all(p.strip() and "\n\n" not in p for p in parts)
    return ok, f"{len(parts)} paragraph(s) separated by two line breaks (needs 2)"


# ---- content and format ------------------------------------------------------------------------------


def detectable_content_number_placeholders(text: str, num_placeholders: int) -> Result:
    n = len(re.findall(r"\[[^\[\]\n]+\]", text))
    return n >= num_placeholders, f"{n} [placeholders] (needs at least {num_placeholders})"


def detectable_content_postscript(text: str, postscript_marker: str) -> Result:
    marker = postscript_marker.strip()
    if marker.upper() in ("P.S.", "P.S"):
        pattern = r"^\s*p\.\s?s\..*$"
    elif marker.upper() in ("P.P.S.", "P.P.S"):
        pattern = r"^\s*p\.\s?p\.\s?s\..*$"
    else:
        pattern = r"^\s*" + re.escape(marker.lower()) + r".*$"
    ok = re.search(pattern, text.lower(), flags=re.MULTILINE) is not None
    return ok, f"a line starting with {marker!r}: {'found' if ok else 'not found'}"


def detectable_format_number_bullet_lists(text: str, num_bullets: int) -> Result:
    n = len(re.findall(r"^\s*[*\-]\s+\S", text, flags=re.MULTILINE))
    return n == num_bullets, f"{n} bullet points (needs exactly {num_bullets})"


def detectable_format_constrained_response(text: str) -> Result:
    options = ("My answer is yes.", "My answer is no.", "My answer is maybe.")
    found = [o for o in options if o in text]
    return len(found) == 1, f"answer options used: {found}"


def detectable_format_number_highlighted_sections(text: str, num_highlights: int) -> Result:
    spans = re.findall(r"(?<!\*)\*(?!\*)([^\n*]+)\*(?!\*)", text) + re.findall(r"\*\*([^\n*]+)\*\*", text)
    n = sum(1 for s in spans if s.strip())
    return n >= num_highlights, f"{n} highlighted sections (needs at least {num_highlights})"


def detectable_format_multiple_sections(text: str, section_spliter: str, num_sections: int) -> Result:
    marker = section_spliter.strip()
    parts = re.split(r"\s?" + re.escape(marker) + r"\s?\d+\s?", text)
    n = len(parts) - 1
    return n >= num_sections, f"{n} sections marked '{marker} N' (needs at least {num_sections})"


def detectable_format_json_format(text: str) -> Result:
    body = text.strip()
    body = re.sub(r"^```(?:json|JSON|Json)?\s*", "", body)
    body = re.sub(r"\s*```$", "", body).strip()
    try:
        json.loads(body)
    except ValueError as e:
        return False, f"not JSON: {e}"
    return True, "valid JSON"


def detectable_format_title(text: str) -> Result:
    titles = [t for t in re.findall(r"<<([^\n]+?)>>", text) if t.strip()]
    return bool(titles), f"title {titles[0]!r}" if titles else "no <<title>>"


def detectable_format_square_brackets(text: str) -> Result:
    ws = text.split()
    bad = [w for w in ws if not (w.startswith("[") and w.endswith("]"))]
    return bool(ws) and not bad, f"words not in brackets: {bad[:5]}" if bad else "every word in brackets"


def combination_two_responses(text: str) -> Result:
    parts = [p.strip() for p in text.split("******")]
    ok = len(parts) == 2 and all(parts) and parts[0] != parts[1]
    return ok, f"{len(parts)} part(s) separated by ******, distinct: {len(set(parts)) == len(parts)}"


def combination_repeat_prompt(text: str, prompt_to_repeat: str) -> Result:
    ok = text.strip().lower().startswith(prompt_to_repeat.strip().lower())
    return ok, "starts with the request, repeated" if ok else "does not start with the request word for word"


def startend_end_checker(text: str, end_phrase: str) -> Result:
    ok = text.strip().strip('"').lower().endswith(end_phrase.strip().lower())
    tail = text.strip()[-len(end_phrase) - 10 :]
    return ok, f"ends with {tail!r} (needs {end_phrase!r})"


def startend_quotation(text: str) -> Result:
    body = text.strip()
    ok = len(body) > 1 and body[0] == '"' and body[-1] == '"'
    return ok, "wrapped in double quotes" if ok else "not wrapped in double quotes"


def punctuation_no_comma(text: str) -> Result:
    n = text.count(",")
    return n == 0, f"{n} commas"


def punctuation_punctuation_dot(text: str) -> Result:
    n = text.count(".")
    return n == 0, f"{n} dots"


def punctuation_punctuation_exclamation(text: str) -> Result:
    n = text.count("!")
    return n == 0, f"{n} exclamation marks"


def first_word_first_word_answer(text: str, first_word: str) -> Result:
    ws = text.split()
    got = _strip_word(ws[0]) if ws else ""
    return got == first_word.strip().lower(), f"first word {got!r} (needs {first_word!r})"


def first_word_first_word_sent(text: str, first_word: str) -> Result:
    firsts = [_strip_word(s.split()[0]) for s in sentences(text) if s.split()]
    bad = [w for w in firsts if w != first_word.strip().lower()]
    return bool(firsts) and not bad, f"{len(bad)} of {len(firsts)} sentences start otherwise"


def last_word_last_word_answer(text: str, last_word: str) -> Result:
    ws = text.split()
    got = _strip_word(ws[-1]) if ws else ""
    return got == last_word.strip().lower(), f"last word {got!r} (needs {last_word!r})"


def last_word_last_word_sent(text: str, last_word: str) -> Result:
    lasts = [_strip_word(s.split()[-1]) for s in sentences(text) if s.split()]
    bad = [w for w in lasts if w != last_word.strip().lower()]
    return bool(lasts) and not bad, f"{len(bad)} of {len(lasts)} sentences end otherwise"


REGISTRY: dict[str, Checker] = {
    "keywords:existence": keywords_existence,
    "keywords:frequency": keywords_frequency,
    "keywords:forbidden_words": keywords_forbidden_words,
    "keywords:letter_frequency": keywords_letter_frequency,
    "keywords:word_once": keywords_word_once,
    "keywords:start_end": keywords_start_end,
    "language:response_language": language_response_language,
    "length_constraints:number_sentences": length_number_sentences,
    "length_constraints:number_paragraphs": length_number_paragraphs,
    "length_constraints:number_words": length_number_words,
    "length_constraints:nth_paragraph_first_word": length_nth_paragraph_first_word,
    "detectable_content:number_placeholders": detectable_content_number_placeholders,
    "detectable_content:postscript": detectable_content_postscript,
    "detectable_format:number_bullet_lists": detectable_format_number_bullet_lists,
    "detectable_format:constrained_response": detectable_format_constrained_response,
    "detectable_format:number_highlighted_sections": detectable_format_number_highlighted_sections,
    "detectable_format:multiple_sections": detectable_format_multiple_sections,
    "detectable_format:json_format": detectable_format_json_format,
    "detectable_format:title": detectable_format_title,
    "detectable_format:square_brackets": detectable_format_square_brackets,
    "combination:two_responses": combination_two_responses,
    "combination:repeat_prompt": combination_repeat_prompt,
    "startend:end_checker": startend_end_checker,
    "startend:quotation": startend_quotation,
    "change_case:capital_word_frequency": change_case_capital_word_frequency,
    "change_case:english_capital": change_case_english_capital,
    "change_case:english_lowercase": change_case_english_lowercase,
    "punctuation:no_comma": punctuation_no_comma,
    "punctuation:punctuation_dot": punctuation_punctuation_dot,
    "punctuation:punctuation_exclamation": punctuation_punctuation_exclamation,
    "first_word:first_word_answer": first_word_first_word_answer,
    "first_word:first_word_sent": first_word_first_word_sent,
    "last_word:last_word_answer": last_word_last_word_answer,
    "last_word:last_word_sent": last_word_last_word_sent,
    "count:lowercase_counting": count_lowercase_counting,
    "letters:letter_counting": letters_letter_counting,
    "paragraphs:paragraphs": paragraphs_paragraphs,
    "paragraphs:paragraphs2": paragraphs_paragraphs2,
}


def check(instruction_id: str, text: str, kwargs: dict[str, Any] | None) -> Result:
    """Run one instruction's checker; keyword arguments that are null are ignored (as the reference does)."""
    checker = REGISTRY.get(instruction_id)
    if checker is None:
        raise InstructionError(
            f"unknown instruction id {instruction_id!r}; this environment checks {len(REGISTRY)} ids "
            f"(resources_servers/instruction_following/README.md lists them)"
        )
    given = {k: v for k, v in (kwargs or {}).items() if v is not None}
    params = [p for p in inspect.signature(checker).parameters if p != "text"]
    unknown = sorted(set(given) - set(params))
    missing = sorted(set(params) - set(given))
    if unknown or missing:
        raise InstructionError(
            f"instruction {instruction_id!r} takes keyword arguments {params}; "
            f"{'unknown ' + str(unknown) if unknown else ''}{' ' if unknown and missing else ''}"
            f"{'missing ' + str(missing) if missing else ''}"
        )
    return checker(text, **given)
