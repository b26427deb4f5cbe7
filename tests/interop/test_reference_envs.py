"""Environment folders written for NeMo Gym, tried as a new user would (real processes): dropped into
``resources_servers/`` of a copy of this checkout, served with ``ng_run``, recorded rollouts replayed
through ``/verify``, own tests run with ``ng_test`` (:mod:`ngym.interop.measure`).

The hand-written reference-style folders (tests/interop/envs) always run. The reference's own folders
run when a copy is present: ``scripts/fetch_reference_envs.sh /tmp/nemo-gym-reference`` then
``NGYM_REFERENCE_ENVS=/tmp/nemo-gym-reference/resources_servers``; skipped otherwise.
"""

from __future__ import annotations

import importlib.util

import os
from pathlib import Path

import pytest

from ngym.interop.measure import measure

pytestmark = pytest.mark.slow

ENVS = Path(__file__).parent / "envs"
REFERENCE = Path(os.environ.get("NGYM_REFERENCE_ENVS", "/tmp/nemo-gym-reference/resources_servers"))

#: reference folders with no dependency beyond ngym: these must serve, reproduce every recorded
#: reward and pass their own tests (the measured table is docs/compatibility.md)
MUST_WORK = ["example_single_tool_call", "example_multi_step", "mcqa", "arc_agi", "calendar", "structured_outputs"]
#: serve and reproduce every recorded reward, but their own tests fail for reasons outside ngym
#: (example_session_state_mgmt's test replaces the TestClient's private `_cookies` with an httpx
#: Cookies subclass, which starlette 1.x's httpx2-based TestClient does not accept)
REPRODUCE_ONLY = ["example_session_state_mgmt"]
#: folders whose requirements.txt names a package beyond ngym: measured only where it is installed
#: (`python -m ngym.interop.reference install <folder>`)
NEEDS = {"structured_outputs": "openapi_schema_validator"}


def installed(name: str) -> bool:
    return name not in NEEDS or importlib.util.find_spec(NEEDS[name]) is not None


def test_reference_style_folders_run_unchanged() -> None:
    results = measure([ENVS / "ref_math", ENVS / "ref_counter"])
    for r in results:
        assert r.serves, r.serve_error
        assert (r.reproduced, r.tests) == (r.rows, "passed"), r.blocker
        assert r.rows == 5


@pytest.mark.skipif(not REFERENCE.is_dir(), reason=f"no copy of the reference's folders at {REFERENCE}")
def test_reference_folders_run_unchanged() -> None:
    results = measure([REFERENCE / name for name in MUST_WORK + REPRODUCE_ONLY if installed(name)])
    for r in results:
        assert r.serves, f"{r.name}: {r.serve_error}"
        assert r.rows > 0 and r.reproduced == r.rows and r.positive > 0, f"{r.name}: {r.mismatches}"
        if r.name in MUST_WORK:
            assert r.tests == "passed", f"{r.name}: {r.tests_detail}"
