"""Seeded generator of code_gen tasks: write a Python function, graded by hidden unit tests.

``generate(split, num_rows, seed)`` yields rows in the reference's LiveCodeBench format
(``verifier_metadata.unit_tests`` with ``fn_name``). Thirty task families, each with constants drawn
per row (a modulus, a shift, a keyword...) and its own reference solution; the hidden tests are the
reference solution's outputs on random inputs (edge cases included), two more examples are shown in
the prompt. Run ``python -m resources_servers.code_gen.generate --split train --num-rows 1000 --seed 1 --out x.jsonl``
or let ``ng_prepare_data`` run it from the config's dataset entry.
"""

from __future__ import annotations

from ngym.data.generators import generator_cli

import json
import random
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Args = list[Any]


@dataclass(frozen=True)
class Family:
    name: str
    difficulty: int
    signature: str                                   # "def f(nums: list[int]) -> int"
    describe: Callable[[dict[str, Any]], str]        # constants -> task text
    solution: str                                    # reference code, {placeholders} from constants
    constants: Callable[[random.Random], dict[str, Any]]
    args: Callable[[random.Random, dict[str, Any]], Args]


def _ints(r: random.Random, lo: int = -50, hi: int = 50, n: tuple[int, int] = (0, 12)) -> list[int]:
    return [r.randint(lo, hi) for _ in range(r.randint(*n))]


def _word(r: random.Random, n: tuple[int, int] = (1, 8), letters: str = string.ascii_lowercase) -> str:
    return "".join(r.choice(letters) for _ in range(r.randint(*n)))


def _sentence(r: random.Random) -> str:
    return " ".join(_word(r, (1, 6), "abcdeio") for _ in range(r.randint(0, 7)))


FAMILIES: list[Family] = [
    Family("sum_multiples", 1, "def sum_multiples(n: int) -> int",
           lambda c: f"returns the sum of all positive integers below n that are divisible by {c['a']} or {c['b']}",
           "def sum_multiples(n):\n    return sum(i for i in range(1, n) if i % {a} == 0 or i % {b} == 0)\n",
           lambda r: {"a": r.randint(2, 5), "b": r.randint(6, 11)}, lambda r, c: [r.randint(0, 500)]),
    Family("count_char", 1, "def count_char(s: str) -> int",
           lambda c: f"returns how many times the letter {c['ch']!r} occurs in s, ignoring case",
           "def count_char(s):\n    return s.lower().count({ch!r})\n",
           lambda r: {"ch": r.choice("aeiost")}, lambda r, c: [_word(r, (0, 20), "aeiostAEIOSTxyz ")]),
    Family("reverse_words", 1, "def reverse_words(s: str) -> str",
           lambda c: "returns the words of s (separated by single spaces) in reverse order, joined by single spaces",
           "def reverse_words(s):\n    return ' '.join(reversed(s.split(' '))) if s else ''\n",
           lambda r: {}, lambda r, c: [_sentence(r)]),
    Family("is_palindrome", 1, "def is_palindrome(s: str) -> bool",
           lambda c: "returns True if s reads the same backwards, considering only letters and digits and ignoring case",
           "def is_palindrome(s):\n    t = [ch.lower() for ch in s if ch.isalnum()]\n    return t == t[::-1]\n",
           lambda r: {}, lambda r, c: [r.choice([_word(r, (0, 6), "abAB1 ,"), "Aba", "a, b A", "ab1 1Ba"])]),
    Family("running_max", 1, "def running_max(nums: list[int]) -> list[int]",
           lambda c: "returns the list whose i-th element is the largest of nums[0..i]",
           "def running_max(nums):\n    out, best = [], None\n    for x in nums:\n        best = x if best is None else max(best, x)\n        out.append(best)\n    return out\n",
           lambda r: {}, lambda r, c: [_ints(r)]),
    Family("kth_largest_distinct", 2, "def kth_largest_distinct(nums: list[int]) -> int",
           lambda c: f"returns the {c['k']}-th largest distinct value of nums, or {c['missing']} if there are fewer than {c['k']} distinct values",
           "def kth_largest_distinct(nums):\n    d = sorted(set(nums), reverse=True)\n    return d[{k} - 1] if len(d) >= {k} else {missing}\n",
           lambda r: {"k": r.randint(1, 4), "missing": r.choice([-1, 0, -999])}, lambda r, c: [_ints(r, -9, 9)]),
    Family("rotate", 1, "def rotate(nums: list[int], k: int) -> list[int]",
           lambda c: f"returns nums rotated to the {c['dir']} by k positions (k may exceed the length; an empty list stays empty)",
           "def rotate(nums, k):\n    if not nums:\n        return []\n    k %= len(nums)\n    return {expr}\n",
           lambda r: r.choice([{"dir": "right", "expr": "nums[-k:] + nums[:-k] if k else nums[:]"},
                               {"dir": "left", "expr": "nums[k:] + nums[:k]"}]),
           lambda r, c: [_ints(r), r.randint(0, 20)]),
    Family("fizz_words", 1, "def fizz_words(n: int) -> list[str]",
           lambda c: f"returns, for i from 1 to n, {c['w1']!r} if i is divisible by {c['a']} and {c['b']}, {c['w2']!r} if only by {c['a']}, {c['w3']!r} if only by {c['b']}, else str(i)",
           "def fizz_words(n):\n    out = []\n    for i in range(1, n + 1):\n        if i % {a} == 0 and i % {b} == 0:\n            out.append({w1!r})\n        elif i % {a} == 0:\n            out.append({w2!r})\n        elif i % {b} == 0:\n            out.append({w3!r})\n        else:\n            out.append(str(i))\n    return out\n",
           lambda r: {"a": r.randint(2, 4), "b": r.randint(5, 7), "w1": "Both", "w2": r.choice(["Fizz", "Ping"]), "w3": r.choice(["Buzz", "Pong"])},
           lambda r, c: [r.randint(0, 40)]),
    Family("gcd_list", 1, "def gcd_list(nums: list[int]) -> int",
           lambda c: "returns the greatest common divisor of the (non-negative) numbers in nums; 0 for an empty list",
           "import math\ndef gcd_list(nums):\n    g = 0\n    for x in nums:\n        g = math.gcd(g, x)\n    return g\n",
           lambda r: {}, lambda r, c: [[r.choice([2, 3, 6, 12]) * r.randint(0, 30) for _ in range(r.randint(0, 6))]]),
    Family("count_primes", 2, "def count_primes(n: int) -> int",
           lambda c: f"returns how many primes p with p <= n satisfy p % {c['m']} == {c['rem']}",
           "def count_primes(n):\n    if n < 2:\n        return 0\n    sieve = [True] * (n + 1)\n    sieve[0] = sieve[1] = False\n    for i in range(2, int(n ** 0.5) + 1):\n        if sieve[i]:\n            sieve[i * i::i] = [False] * len(sieve[i * i::i])\n    return sum(1 for p in range(n + 1) if sieve[p] and p % {m} == {rem})\n",
           lambda r: (lambda m: {"m": m, "rem": r.randint(0, m - 1)})(r.randint(2, 6)), lambda r, c: [r.randint(0, 3000)]),
    Family("digital_root", 1, "def digital_root(n: int) -> int",
           lambda c: f"repeatedly replaces n (>= 0) by the sum of its digits in base {c['base']} until it is below {c['base']}, and returns it",
           "def digital_root(n):\n    while n >= {base}:\n        s = 0\n        while n:\n            s += n % {base}\n            n //= {base}\n        n = s\n    return n\n",
           lambda r: {"base": r.choice([2, 7, 8, 10, 16])}, lambda r, c: [r.randint(0, 10 ** r.randint(1, 12))]),
    Family("caesar", 1, "def caesar(s: str) -> str",
           lambda c: f"shifts every lowercase letter of s {c['k']} places forward in the alphabet (wrapping from z to a); other characters are unchanged",
           "def caesar(s):\n    return ''.join(chr((ord(ch) - 97 + {k}) % 26 + 97) if 'a' <= ch <= 'z' else ch for ch in s)\n",
           lambda r: {"k": r.randint(1, 25)}, lambda r, c: [_word(r, (0, 15), "abcxyz XYZ!")]),
    Family("run_length", 2, "def run_length(s: str) -> str",
           lambda c: f"returns the run-length encoding of s: each maximal run of a character c of length k becomes {c['fmt']}",
           "def run_length(s):\n    out, i = [], 0\n    while i < len(s):\n        j = i\n        while j < len(s) and s[j] == s[i]:\n            j += 1\n        out.append({expr})\n        i = j\n    return ''.join(out)\n",
           lambda r: r.choice([{"fmt": "c followed by k (e.g. 'aab' -> 'a2b1')", "expr": "s[i] + str(j - i)"},
                               {"fmt": "k followed by c (e.g. 'aab' -> '2a1b')", "expr": "str(j - i) + s[i]"}]),
           lambda r, c: [_word(r, (0, 14), "aab")]),
    Family("longest_increasing_run", 2, "def longest_increasing_run(nums: list[int]) -> int",
           lambda c: f"returns the length of the longest contiguous run of {c['kind']} increasing values in nums (0 for an empty list)",
           "def longest_increasing_run(nums):\n    best = cur = 0\n    for i, x in enumerate(nums):\n        cur = cur + 1 if i and x {op} nums[i - 1] else 1\n        best = max(best, cur)\n    return best\n",
           lambda r: r.choice([{"kind": "strictly", "op": ">"}, {"kind": "non-strictly (equal allowed)", "op": ">="}]),
           lambda r, c: [_ints(r, 0, 6, (0, 14))]),
    Family("count_pairs", 2, "def count_pairs(nums: list[int], target: int) -> int",
           lambda c: "returns the number of index pairs i < j with nums[i] + nums[j] == target",
           "def count_pairs(nums, target):\n    return sum(1 for i in range(len(nums)) for j in range(i + 1, len(nums)) if nums[i] + nums[j] == target)\n",
           lambda r: {}, lambda r, c: [_ints(r, -5, 5), r.randint(-4, 4)]),
    Family("transpose", 1, "def transpose(grid: list[list[int]]) -> list[list[int]]",
           lambda c: "returns the transpose of the rectangular matrix grid (an empty matrix gives [])",
           "def transpose(grid):\n    return [list(row) for row in zip(*grid)] if grid else []\n",
           lambda r: {}, lambda r, c: (lambda h, w: [[[r.randint(0, 9) for _ in range(w)] for _ in range(h)]])(r.randint(0, 4), r.randint(1, 4))),
    Family("collatz_steps", 1, "def collatz_steps(n: int) -> int",
           lambda c: f"returns how many steps n (>= 1) takes to reach 1, where a step maps even m to m // 2 and odd m to {c['a']} * m + 1",
           "def collatz_steps(n):\n    steps = 0\n    while n != 1:\n        n = n // 2 if n % 2 == 0 else {a} * n + 1\n        steps += 1\n    return steps\n",
           lambda r: {"a": 3}, lambda r, c: [r.randint(1, 5000)]),
    Family("popcount_filter", 2, "def popcount_filter(nums: list[int]) -> list[int]",
           lambda c: f"returns, in order, the numbers of nums (all >= 0) whose binary representation has {c['kind']} number of 1 bits",
           "def popcount_filter(nums):\n    return [x for x in nums if bin(x).count('1') % 2 == {parity}]\n",
           lambda r: r.choice([{"kind": "an even", "parity": 0}, {"kind": "an odd", "parity": 1}]), lambda r, c: [_ints(r, 0, 300)]),
    Family("merge_sorted", 1, "def merge_sorted(a: list[int], b: list[int]) -> list[int]",
           lambda c: f"merges two lists sorted in {c['order']} order into one list in that order",
           "def merge_sorted(a, b):\n    return sorted(a + b, reverse={rev})\n",
           lambda r: r.choice([{"order": "ascending", "rev": False}, {"order": "descending", "rev": True}]),
           lambda r, c: [sorted(_ints(r), reverse=c["rev"]), sorted(_ints(r), reverse=c["rev"])]),
    Family("unique_in_order", 1, "def unique_in_order(nums: list[int]) -> list[int]",
           lambda c: f"returns the values of nums that occur exactly {c['k']} time(s), in order of first occurrence, each once",
           "def unique_in_order(nums):\n    out = []\n    for x in nums:\n        if nums.count(x) == {k} and x not in out:\n            out.append(x)\n    return out\n",
           lambda r: {"k": r.randint(1, 2)}, lambda r, c: [_ints(r, 0, 6)]),
    Family("balanced", 2, "def balanced(s: str) -> bool",
           lambda c: "returns True if the brackets ()[]{} in s are balanced and properly nested (other characters are ignored)",
           "def balanced(s):\n    pairs, stack = {{')': '(', ']': '[', '}}': '{{'}}, []\n    for ch in s:\n        if ch in '([{{':\n            stack.append(ch)\n        elif ch in pairs:\n            if not stack or stack.pop() != pairs[ch]:\n                return False\n    return not stack\n",
           lambda r: {}, lambda r, c: [r.choice(["", "([]{})", "(]", "a(b[c]d)e", "((", "{[()()]}", _word(r, (0, 10), "()[]{}x")])]),
    Family("most_common_word", 2, "def most_common_word(text: str) -> str",
           lambda c: "returns the most frequent word of text (words are separated by whitespace, compared in lowercase); ties go to the alphabetically smallest; '' for no words",
           "from collections import Counter\ndef most_common_word(text):\n    counts = Counter(w.lower() for w in text.split())\n    if not counts:\n        return ''\n    best = max(counts.values())\n    return min(w for w, n in counts.items() if n == best)\n",
           lambda r: {}, lambda r, c: [_sentence(r)]),
    Family("fib_mod", 1, "def fib_mod(n: int) -> int",
           lambda c: f"returns F(n) modulo {c['m']}, where F(0) = 0, F(1) = 1 and F(k) = F(k-1) + F(k-2)",
           "def fib_mod(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, (a + b) % {m}\n    return a % {m}\n",
           lambda r: {"m": r.choice([7, 10, 97, 1000, 1000000007])}, lambda r, c: [r.randint(0, 2000)]),
    Family("weighted_odd_squares", 1, "def weighted_odd_squares(nums: list[int]) -> int",
           lambda c: f"returns {c['w']} times the sum of the squares of the odd numbers of nums",
           "def weighted_odd_squares(nums):\n    return {w} * sum(x * x for x in nums if x % 2)\n",
           lambda r: {"w": r.randint(1, 9)}, lambda r, c: [_ints(r)]),
    Family("is_anagram", 1, "def is_anagram(a: str, b: str) -> bool",
           lambda c: "returns True if a and b contain the same letters the same number of times, ignoring case and spaces",
           "def is_anagram(a, b):\n    norm = lambda s: sorted(s.replace(' ', '').lower())\n    return norm(a) == norm(b)\n",
           lambda r: {}, lambda r, c: (lambda w: [w, r.choice(["".join(r.sample(w, len(w))), _word(r, (0, 6), "abc")])])(_word(r, (0, 6), "abcAB "))),
    Family("max_subarray", 2, "def max_subarray(nums: list[int]) -> int",
           lambda c: f"returns the largest sum of a contiguous non-empty subarray of nums, or {c['empty']} if nums is empty",
           "def max_subarray(nums):\n    if not nums:\n        return {empty}\n    best = cur = nums[0]\n    for x in nums[1:]:\n        cur = max(x, cur + x)\n        best = max(best, cur)\n    return best\n",
           lambda r: {"empty": r.choice([0, -1])}, lambda r, c: [_ints(r, -20, 20)]),
    Family("min_coins", 3, "def min_coins(amount: int) -> int",
           lambda c: f"returns the fewest coins of values {c['coins']} (each usable any number of times) that sum to amount, or -1 if impossible",
           "def min_coins(amount):\n    coins = {coins}\n    best = [0] + [None] * amount\n    for a in range(1, amount + 1):\n        options = [best[a - c] for c in coins if c <= a and best[a - c] is not None]\n        best[a] = min(options) + 1 if options else None\n    return best[amount] if best[amount] is not None else -1\n",
           lambda r: {"coins": sorted(r.sample([2, 3, 5, 7, 9, 11, 13], 3))}, lambda r, c: [r.randint(0, 120)]),
    Family("count_islands", 3, "def count_islands(grid: list[str]) -> int",
           lambda c: f"returns the number of islands in grid, a list of equal-length strings of '{c['land']}' (land) and '.' (water); land cells connect {c['conn']}",
           "def count_islands(grid):\n    seen, count = set(), 0\n    steps = {steps}\n    for i in range(len(grid)):\n        for j in range(len(grid[0]) if grid else 0):\n            if grid[i][j] == {land!r} and (i, j) not in seen:\n                count += 1\n                stack = [(i, j)]\n                seen.add((i, j))\n                while stack:\n                    y, x = stack.pop()\n                    for dy, dx in steps:\n                        ny, nx = y + dy, x + dx\n                        if 0 <= ny < len(grid) and 0 <= nx < len(grid[0]) and grid[ny][nx] == {land!r} and (ny, nx) not in seen:\n                            seen.add((ny, nx))\n                            stack.append((ny, nx))\n    return count\n",
           lambda r: {"land": r.choice("#X"), **r.choice([
               {"conn": "horizontally and vertically", "steps": [(0, 1), (1, 0), (0, -1), (-1, 0)]},
               {"conn": "horizontally, vertically and diagonally",
                "steps": [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1) if (a, b) != (0, 0)]}])},
           lambda r, c: (lambda h, w: [["".join(r.choice(c["land"] + "..") for _ in range(w)) for _ in range(h)]])(r.randint(1, 6), r.randint(1, 6))),
    Family("spiral_order", 3, "def spiral_order(grid: list[list[int]]) -> list[int]",
           lambda c: f"returns the values of the rectangular matrix grid in spiral order, starting at the top-left corner and going {c['first']} first",
           "def spiral_order(grid):\n    out = []\n    g = [row[:] for row in grid]\n    if {transpose}:\n        g = [list(r) for r in zip(*g)] if g else []\n    while g:\n        out += g.pop(0)\n        g = [list(r) for r in zip(*g)][::-1] if g else []\n    return out\n",
           lambda r: r.choice([{"first": "right", "transpose": False}, {"first": "down", "transpose": True}]),
           lambda r, c: (lambda h, w: [[[r.randint(0, 9) for _ in range(w)] for _ in range(h)]])(r.randint(0, 4), r.randint(1, 4))),
    Family("base_convert", 2, "def base_convert(n: int) -> str",
           lambda c: f"returns n (>= 0) written in base {c['base']} with digits 0-9 then lowercase letters, without leading zeros ('0' for zero)",
           "def base_convert(n):\n    digits = '0123456789abcdefghijklmnopqrstuvwxyz'\n    if n == 0:\n        return '0'\n    out = ''\n    while n:\n        out = digits[n % {base}] + out\n        n //= {base}\n    return out\n",
           lambda r: {"base": r.choice([2, 3, 5, 7, 12, 16, 36])}, lambda r, c: [r.randint(0, 10 ** r.randint(1, 9))]),
]


def _fill(template: str, constants: dict[str, Any]) -> str:
    return template.format(**constants)


def _call(solution: str, fn_name: str, args: Args) -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(solution, f"<{fn_name}>", "exec"), namespace)  # our own reference code
    return namespace[fn_name](*json.loads(json.dumps(args)))


def _example(fn_name: str, args: Args, value: Any) -> str:
    return f"{fn_name}({', '.join(repr(a) for a in args)}) == {value!r}"


PROMPT = """Write a Python function `{signature}` that {task}.

Examples:
{examples}

You may test code with the `run_python` tool. Answer with the complete function (imports included, standard library only) in one final ```python code block."""


def make_row(r: random.Random, index: int, split: str, num_tests: int = 10) -> tuple[dict[str, Any], str]:
    """One row and its reference solution (the oracle, kept out of the row)."""
    family = FAMILIES[r.randrange(len(FAMILIES))]
    constants = family.constants(r)
    solution = _fill(family.solution, constants)
    fn_name = family.name
    seen: set[str] = set()
    cases: list[tuple[Args, Any]] = []
    for _ in range(num_tests * 6):
        args = family.args(r, constants)
        key = json.dumps(args)
        if key in seen:
            continue
        seen.add(key)
        cases.append((args, _call(solution, fn_name, args)))
        if len(cases) == num_tests + 2:
            break
    shown, hidden = cases[:2], cases[2:] if len(cases) > 2 else cases
    examples = "\n".join(_example(fn_name, a, v) for a, v in shown)
    prompt = PROMPT.format(signature=family.signature, task=family.describe(constants), examples=examples)
    row = {
        "responses_create_params": {"input": [{"role": "user", "content": prompt}]},
        "verifier_metadata": {"unit_tests": {
            "inputs": ["\n".join(json.dumps(a) for a in args) for args, _ in hidden],
            "outputs": [json.dumps(v) for _, v in hidden],
            "fn_name": fn_name,
        }},
        "task_id": f"{split}-{index}-{family.name}",
        "family": family.name,
        "difficulty": family.difficulty,
        "dataset": "ngym_code_gen",
        "source": "generated",
    }
    return row, solution


def generate_with_solutions(split: str, num_rows: int, seed: int) -> Iterator[tuple[dict[str, Any], str]]:
    r = random.Random(f"code_gen/{split}/{seed}")
    for index in range(num_rows):
        yield make_row(r, index, split)


def generate(split: str, num_rows: int, seed: int) -> Iterator[dict[str, Any]]:
    """The ``ng_prepare_data`` generator protocol: rows of ``split``, deterministic in ``seed``."""
    for row, _ in generate_with_solutions(split, num_rows, seed):
        yield row


def main(argv: list[str] | None = None) -> int:
    return generator_cli(generate, __doc__, 1000, argv)


if __name__ == "__main__":
    raise SystemExit(main())
