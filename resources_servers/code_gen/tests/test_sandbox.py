"""The sandbox and the grader against real programs and real attacks (no fakes: real processes)."""

from __future__ import annotations

import json
import os
import socket
import textwrap
from pathlib import Path

import pytest

from resources_servers.code_gen.code_sandbox import Sandbox, SandboxConfig, SandboxLimits, kill_uid
from resources_servers.code_gen.grading import UnitTests, extract_code, grade, job_for, same_stdout

ENV_DIR = Path(__file__).resolve().parents[1]
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="namespaces and the uid change need root")

ADD = UnitTests(inputs=["1\n2", "[1]\n[2]", "\"a\"\n\"b\""], outputs=["3", "[1, 2]", "\"ab\""], fn_name="add")
REVERSE = UnitTests(inputs=["abc\n", "hello\n"], outputs=["cba", "olleh"])


@pytest.fixture(scope="module", params=["namespaces", "rlimits"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    if request.param == "namespaces" and not ROOT:
        pytest.skip("namespaces need root")
    config = SandboxConfig(isolation=request.param, hide_paths=[str(ENV_DIR)],
                           limits=SandboxLimits(cpu_s=5, memory_mb=512, processes=16))
    return Sandbox(config)


def score(sandbox: Sandbox, tests: UnitTests, code: str, deadline: float = 20) -> tuple[float, list[str]]:
    result = sandbox.run(job_for(tests, textwrap.dedent(code), per_test_timeout=2), deadline)
    outcomes = grade(tests, result)
    return float(all(o.passed for o in outcomes)), [o.status for o in outcomes]


def test_correct_solutions_pass(sandbox: Sandbox) -> None:
    assert score(sandbox, ADD, "def add(a, b):\n    return a + b\n") == (1.0, ["passed"] * 3)
    assert score(sandbox, ADD, "class Solution:\n    def add(self, a, b):\n        return a + b\n")[0] == 1.0
    assert score(sandbox, REVERSE, "print(input()[::-1])")[0] == 1.0
    assert score(sandbox, REVERSE, "import sys\nprint(sys.stdin.read().strip()[::-1])\nsys.exit(0)")[0] == 1.0
    # a main guard runs, as in a real program
    assert score(sandbox, REVERSE, "def main():\n    print(input()[::-1])\nif __name__ == '__main__':\n    main()")[0] == 1.0


def test_wrong_and_broken_solutions_fail(sandbox: Sandbox) -> None:
    assert score(sandbox, ADD, "def add(a, b):\n    return a - b\n")[0] == 0.0
    assert score(sandbox, ADD, "def plus(a, b):\n    return a + b\n")[1] == ["error"] * 3
    assert score(sandbox, ADD, "def add(a, b) return a + b")[1] == ["error"] * 3
    assert score(sandbox, REVERSE, "print(input())")[0] == 0.0
    assert score(sandbox, REVERSE, "raise ValueError('x')")[1] == ["error", "error"]


@pytest.mark.parametrize("code", [
    "print('passed')\nprint('All tests passed')",                     # fake "passed"
    "import sys\nsys.exit(0)",                                         # exits early
    "import os\nos._exit(0)",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",       # kills the harness
    "import os, signal\nos.kill(1, signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)",
])
def test_stdio_attacks_do_not_score(sandbox: Sandbox, code: str) -> None:
    assert score(sandbox, REVERSE, code)[0] == 0.0


@pytest.mark.parametrize("code", [
    "import sys\nsys.exit(0)\ndef add(a, b):\n    return a + b",
    "import os\ndef add(a, b):\n    os._exit(0)",
    "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)",
    "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\ndef add(a, b):\n    return 0",
    # forged records on every descriptor the worker may hold: the values are still compared outside
    "import os, json\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b''.join(json.dumps({'i': i, 'status': 'ok', 'value': '0'}).encode() + b'\\n' for i in range(3)))\n"
    "    except OSError:\n        pass\ndef add(a, b):\n    print('passed'); return None",
])
def test_call_attacks_do_not_score(sandbox: Sandbox, code: str) -> None:
    assert score(sandbox, ADD, code)[0] == 0.0


def test_the_tests_are_not_in_the_sandbox(sandbox: Sandbox) -> None:
    """The expected outputs never enter the sandbox: a program that searches for them finds nothing."""
    code = """
    import os, sys
    found = []
    for base in ('/tmp', os.getcwd(), '/proc/self'):
        for root, dirs, files in os.walk(base):
            for name in files:
                try:
                    if b'"ab"' in open(os.path.join(root, name), 'rb').read(1 << 20):
                        found.append(name)
                except OSError:
                    pass
    def add(a, b):
        return found[0] if found else None
    """
    assert score(sandbox, ADD, code)[0] == 0.0


@needs_root
def test_hidden_paths_and_network_are_unreachable() -> None:
    sandbox = Sandbox(SandboxConfig(isolation="namespaces", hide_paths=[str(ENV_DIR)]))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    try:
        code = f"""
        import os, socket
        hidden = {str(ENV_DIR)!r}  # covered by an empty tmpfs, or absent (a checkout under the private /tmp)
        print(sorted(os.listdir(hidden)) if os.path.isdir(hidden) else [])
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2)
            print("connected")
        except OSError as e:
            print("no network")
        print(os.getuid() != 0, len([p for p in os.listdir('/proc') if p.isdigit()]) < 5)
        """
        result = sandbox.run({"mode": "stdio", "code": textwrap.dedent(code), "inputs": [""]}, 20)
    finally:
        listener.close()
    assert result.records[0]["stdout"].split("\n")[:3] == ["[]", "no network", "True True"]
    # writing into the environment's folder (its tests, its data) is refused
    edit = f"open({str(ENV_DIR / 'tests' / 'test_sandbox.py')!r}, 'a').write('x')"
    assert sandbox.run({"mode": "stdio", "code": edit, "inputs": [""]}, 20).records[0]["status"] == "error"
    assert "x" != (ENV_DIR / "tests" / "test_sandbox.py").read_text()[-1]


@needs_root
def test_other_checkouts_and_homes_are_hidden_by_default() -> None:
    """Data lives in other places too (another checkout of the project, a home directory)."""
    sandbox = Sandbox(SandboxConfig(isolation="namespaces"))
    visible = [p for p in ("/work", "/home", "/root", str(ENV_DIR.parents[1])) if os.path.isdir(p)]
    # each is covered by an empty tmpfs, or absent inside the sandbox (a checkout under the private /tmp)
    code = f"import os\nprint(sum(len(os.listdir(p)) for p in {visible!r} if os.path.isdir(p)))"
    result = sandbox.run({"mode": "stdio", "code": code, "inputs": [""]}, 20)
    assert result.records[0]["stdout"] == "0\n", result.records[0]


def test_limits(sandbox: Sandbox) -> None:
    statuses = score(sandbox, REVERSE, "while True:\n    pass")[1]
    assert statuses == ["timeout", "timeout"]
    assert score(sandbox, REVERSE, "x = bytearray(2 << 30)\nprint(input()[::-1])")[0] == 0.0
    big = sandbox.run({"mode": "stdio", "code": "open('f', 'wb').write(b'x' * (64 << 20))", "inputs": [""]}, 20)
    assert big.records[0]["status"] == "error"
    flood = sandbox.run({"mode": "stdio", "code": "while True:\n    print('y' * 10000)", "inputs": [""],
                         "per_test_timeout": 1}, 20)
    assert len(flood.records[0]["stdout"]) <= sandbox.config.max_output_bytes


def test_fork_bomb_is_contained(sandbox: Sandbox) -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = sandbox.run({"mode": "stdio", "code": code, "inputs": [""], "per_test_timeout": 2}, 15)
    assert result.records[0]["status"] != "ok"
    if ROOT:
        assert all(kill_uid(sandbox.config.uid_base + s) == 0 for s in range(sandbox.config.max_concurrent))
    assert score(sandbox, ADD, "def add(a, b):\n    return a + b\n")[0] == 1.0  # the sandbox still works


@needs_root
def test_escaped_processes_are_killed() -> None:
    """A daemon (double fork + setsid) outlives the program; the clean-up kills it by uid."""
    sandbox = Sandbox(SandboxConfig(isolation="rlimits", max_concurrent=1))
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n"
    sandbox.run({"mode": "stdio", "code": code, "inputs": [""]}, 10)
    assert kill_uid(sandbox.config.uid_base) == 0


def test_private_dir_is_removed() -> None:
    sandbox = Sandbox(SandboxConfig(isolation="rlimits"))
    result = sandbox.run({"mode": "stdio", "code": "import os\nopen('f', 'w').write('x')\nprint(os.getcwd())",
                          "inputs": [""]}, 10)
    workdir = result.records[0]["stdout"].strip()
    assert workdir and not os.path.exists(workdir)


def test_deadline_kills_the_run(sandbox: Sandbox) -> None:
    code = "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\ndef add(a, b):\n    while True:\n        pass"
    result = sandbox.run(job_for(ADD, code, per_test_timeout=30), deadline_s=2)
    assert result.timed_out and not any(o.passed for o in grade(ADD, result))


def test_extract_code_and_stdout_comparison() -> None:
    text = "Here:\n```python\nx = 1\n```\nand finally\n```python\ndef f():\n    return 2\n```\nDone."
    assert extract_code(text) == "def f():\n    return 2"
    assert extract_code("no code") is None and extract_code("```\n\n```") is None
    assert same_stdout("1 2.50\n", "1 2.5") and same_stdout(" a \nb\n\n", "a\nb")
    assert not same_stdout("1 2", "1 3") and not same_stdout("a", "a\nb")


def test_unit_tests_accept_livecodebench_rows() -> None:
    row = json.loads('{"inputs": ["6\\n4 13 2 3 2 6"], "outputs": ["4 30 2 13 2 13"], "fn_name": null}')
    assert UnitTests.model_validate(row).fn_name is None
    with pytest.raises(ValueError, match="1 inputs but 2 outputs"):
        UnitTests(inputs=["1"], outputs=["1", "2"])
