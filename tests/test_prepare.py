"""ng_prepare_data (spec §11): row checks, metrics files compatible with the reference's committed
ones, conflict detection, collation, and balanced mixing."""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ngym.cli.common import DEPLOYMENT_KEYS, command_args, load
from ngym.config.schema import DatasetConfig
from ngym.data.dataset_metrics import DatasetMetrics, Running, differences, round_metric
from ngym.errors import ArgumentError, ConfigError, InputError
from ngym.data.mix import balanced_plan
from ngym.data.prepare import POLICY_PLACEHOLDERS, PrepareArgs, PrepareReport, metrics_document, prepare, read_dataset

REPO = Path(__file__).resolve().parents[1]
COMPAT = REPO.parent / "shared" / "compat" / "reference-v0.2.1"
REFERENCE_ENVS = sorted(p.parent.name for p in COMPAT.glob("*/example_metrics.json"))
OUR_ENVS = sorted(p.parent.parent.name for p in (REPO / "resources_servers").glob("*/data/example.jsonl"))
BIN = Path(sys.executable).parent
CONFIG_KEYS = ("name", "type", "jsonl_fpath", "num_repeats", "gitlab_identifier", "huggingface_identifier", "license")
TOOL = {"type": "function", "name": "t", "parameters": {"type": "object", "properties": {}}}


def rcp(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"input": [{"role": "user", "content": text}], **extra}


def write_rows(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def agent_yaml(agent: str, datasets: list[dict[str, Any]]) -> str:
    return json.dumps(
        {agent: {"responses_api_agents": {"simple_agent": {"entrypoint": "app.py", "datasets": datasets}}}}
    )


def run_prepare(tmp_path: Path, *args: str) -> PrepareReport:
    """Like the command, in-process: relative paths start at ``tmp_path``."""
    os.chdir(tmp_path)
    cfg, pc = load(
        list(args), command="ng_prepare_data", model=PrepareArgs, known=DEPLOYMENT_KEYS,
        initial_global_config_dict=dict(POLICY_PLACEHOLDERS), skip_load_from_dotenv=True,
    )
    return prepare(command_args(cfg, PrepareArgs, "ng_prepare_data"), cfg, pc.sources)


@pytest.fixture(autouse=True)
def _restore_cwd() -> Any:
    before = os.getcwd()
    yield
    os.chdir(before)


@pytest.fixture
def two_envs(tmp_path: Path) -> Path:
    """Agents a (6 train rows, 2 validation rows) and b (2 train rows, num_repeats 2)."""
    write_rows(tmp_path / "a/train.jsonl", [{"responses_create_params": rcp(f"a{i}"), "k": i} for i in range(6)])
    write_rows(tmp_path / "a/valid.jsonl", [{"responses_create_params": rcp(f"va{i}")} for i in range(2)])
    write_rows(
        tmp_path / "b/train.jsonl",
        [{"responses_create_params": rcp(f"b{i}"), "agent_ref": {"name": "old"}} for i in range(2)],
    )
    write_rows(tmp_path / "a/example.jsonl", [{"responses_create_params": rcp("ex")}] * 5)
    lic = {"license": "Apache 2.0"}
    (tmp_path / "a.yaml").write_text(
        agent_yaml(
            "a",
            [
                {"name": "train", "type": "train", "jsonl_fpath": "a/train.jsonl", **lic},
                {"name": "valid", "type": "validation", "jsonl_fpath": "a/valid.jsonl", **lic},
                {"name": "example", "type": "example", "jsonl_fpath": "a/example.jsonl"},
            ],
        )
    )
    (tmp_path / "b.yaml").write_text(
        agent_yaml(
            "b",
            [
                {"name": "train", "type": "train", "jsonl_fpath": "b/train.jsonl", "num_repeats": 2, **lic},
            ],
        )
    )
    return tmp_path


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- metrics compatible with the reference ---------------------------------------------------


@pytest.mark.skipif(not REFERENCE_ENVS, reason=f"reference data not found under {COMPAT}")
@pytest.mark.parametrize("env", REFERENCE_ENVS)
def test_reference_metrics_are_recomputed_exactly(env: str) -> None:
    committed = json.loads((COMPAT / env / "example_metrics.json").read_text())
    config = DatasetConfig(name="example", type="example", jsonl_fpath=committed["jsonl_fpath"])
    document = metrics_document(config, read_dataset("agent", config, COMPAT / env / "example.jsonl").metrics)
    assert {k: document[k] for k in committed} == committed
    assert set(document) - set(committed) <= set(CONFIG_KEYS)  # only config keys newer than some files
    assert differences(committed, document) == []


@pytest.mark.parametrize("env", OUR_ENVS)
def test_our_committed_example_metrics_match_our_data(env: str) -> None:
    data = REPO / "resources_servers" / env / "data"
    committed = json.loads((data / "example_metrics.json").read_text())
    config = DatasetConfig(name="example", type="example", jsonl_fpath=f"resources_servers/{env}/data/example.jsonl")
    assert metrics_document(config, read_dataset("agent", config, data / "example.jsonl").metrics) == committed
    assert committed["Number of examples"] == 5


def test_running_stats_are_welford_sample_std_and_merge() -> None:
    rng = random.Random(3)
    values = [rng.uniform(-50, 50) for _ in range(200)]
    whole, left, right = Running(), Running(), Running()
    for i, x in enumerate(values):
        whole.add(x)
        (left if i < 77 else right).add(x)
    assert whole.mean == pytest.approx(statistics.fmean(values))
    assert whole.std == pytest.approx(statistics.stdev(values))
    merged = left.merge(right)
    assert (merged.count, merged.low, merged.high) == (200, min(values), max(values))
    assert merged.mean == pytest.approx(whole.mean) and merged.std == pytest.approx(whole.std)
    assert Running().to_json() == {
        "Total # non-null values": 0,
        "Average": 0.0,
        "Min": 0.0,
        "Max": 0.0,
        "Standard deviation": 0.0,
    }


@pytest.mark.parametrize(
    ("x", "rounded"),
    [(1504.0, 1504.0), (160.2247, 160.22), (1.0049, 1.0), (0.12345, 0.123), (-0.98765, -0.988), (-2.345, -2.35)],
)
def test_rounding_two_decimals_from_one_else_three(x: float, rounded: float) -> None:
    assert round_metric(x) == pytest.approx(rounded, abs=1e-12)


def test_row_metrics_count_turns_tools_temperature_and_task_fields() -> None:
    m = DatasetMetrics()
    rows = [
        {
            "responses_create_params": rcp(tools=[TOOL, TOOL], temperature=0.5),
            "tag": "x",
            "n": [1, 2],
            "ok": True,
            "meta": {"a": 1},
        },
        {"responses_create_params": {"input": "plain string"}, "tag": "y", "n": 3, "ok": None},
        {"responses_create_params": {"input": [{"role": "system", "content": "s"}]}, "tag": "x"},
    ]
    from ngym.wire.responses import ResponseCreateParams

    for row in rows:
        m.add(row, ResponseCreateParams.model_validate(row["responses_create_params"]))
    doc = m.to_json()
    assert doc["Number of examples"] == 3
    assert doc["Number of tools"]["Total # non-null values"] == 1 and doc["Number of tools"]["Average"] == 2.0
    assert doc["Number of turns"]["Total # non-null values"] == 2  # the system-only row has no user turn
    assert doc["Temperature"]["Average"] == 0.5
    assert doc["tag"] == {"unique_count": 2, "total_count": 3}
    assert (
        doc["n"]["Total # non-null values"] == 3
        and doc["n"]["Average"] == 2.0
        and doc["n"]["Standard deviation"] == 1.0
    )
    assert doc["ok"]["Total # non-null values"] == 1  # null is skipped, true counts as 1
    assert "meta" not in doc


@pytest.mark.parametrize(
    ("old", "new", "same"),
    [
        (2.0, 2.0049, True),
        (2.0, 2.0051, False),
        (0.5, 0.5004, True),
        (0.5, 0.5006, False),
        (5, 5, True),
        (5, 6, False),
        ("a", "a", True),
        ("a", "b", False),
        (None, None, True),
        (True, 1.0, False),
        ([1, 2, 2], [2, 1, 2], True),
        ([1, 2], [1, 2, 2], False),
        ({"a": 1}, {"a": 1, "extra": 2}, True),
        ({"a": 1, "gone": 2}, {"a": 1}, False),
    ],
)
def test_conflict_comparison_tolerances(old: Any, new: Any, same: bool) -> None:
    assert (differences({"k": old}, {"k": new}) == []) is same


# ---- the command: rows, metrics files, collation ---------------------------------------------


def test_train_preparation_collates_with_agent_ref_and_repeats(two_envs: Path) -> None:
    report = run_prepare(two_envs, "+config_paths=[a.yaml,b.yaml]", "+output_dirpath=out", "+mode=train_preparation")
    train = lines(two_envs / "out/train.jsonl")
    assert [r["responses_create_params"]["input"][0]["content"] for r in train] == [f"a{i}" for i in range(6)] + [
        "b0",
        "b0",
        "b1",
        "b1",
    ]
    assert [r["agent_ref"] for r in train] == [{"type": "responses_api_agents", "name": "a"}] * 6 + [
        {"type": "responses_api_agents", "name": "b"}
    ] * 4
    assert [r["k"] for r in train[:6]] == list(range(6))  # task fields pass through
    assert len(lines(two_envs / "out/validation.jsonl")) == 2
    assert not (two_envs / "out/example.jsonl").exists()  # not this mode's type
    assert json.loads((two_envs / "b/train_metrics.json").read_text())["Number of examples"] == 4
    train_metrics = json.loads((two_envs / "out/train_metrics.json").read_text())
    assert train_metrics["Number of examples"] == 10 and train_metrics["name"] == "train"
    assert [m.status for m in report.metrics] == ["written"] * 5


def test_bad_rows_fail_with_file_line_and_reason_and_write_nothing(two_envs: Path) -> None:
    write_rows(
        two_envs / "a/train.jsonl",
        [
            {"responses_create_params": rcp()},
            "not json",
            "[1, 2]",
            "",
            {"prompt": "x"},
            {"responses_create_params": {"input": [], "bogus": 1}},
            {"responses_create_params": rcp()},
        ],
    )
    with pytest.raises(InputError) as e:
        run_prepare(two_envs, "+config_paths=[a.yaml,b.yaml]", "+output_dirpath=out", "+mode=train_preparation")
    message = str(e.value)
    assert "4 invalid row(s)" in message and "+skip_invalid_rows=true" in message
    for line, reason in [(2, "not valid JSON"), (3, "not list"), (5, "no 'responses_create_params'"), (6, "bogus")]:
        assert f"a/train.jsonl:{line}: " in message
        assert reason in message.split(f"train.jsonl:{line}: ")[1].splitlines()[0]
    assert not (two_envs / "out").exists() and not (two_envs / "a/train_metrics.json").exists()


def test_skip_invalid_rows_leaves_them_out_and_lists_them(two_envs: Path) -> None:
    write_rows(
        two_envs / "a/train.jsonl",
        [{"responses_create_params": rcp("good")}, "oops", {"responses_create_params": rcp("good2")}],
    )
    report = run_prepare(
        two_envs,
        "+config_paths=[a.yaml,b.yaml]",
        "+output_dirpath=out",
        "+mode=train_preparation",
        "+skip_invalid_rows=true",
    )
    assert len(report.skipped) == 1 and "train.jsonl:2:" in report.skipped[0]
    assert len(lines(two_envs / "out/train.jsonl")) == 2 + 4
    assert json.loads((two_envs / "a/train_metrics.json").read_text())["Number of examples"] == 2
    assert "train.jsonl:2:" in (two_envs / "out/invalid_rows.txt").read_text()


def test_metrics_conflict_is_detected_kept_apart_and_overwritable(two_envs: Path) -> None:
    args = ("+config_paths=[a.yaml,b.yaml]", "+output_dirpath=out", "+mode=train_preparation")
    run_prepare(two_envs, *args)
    metrics = two_envs / "a/train_metrics.json"
    committed = json.loads(metrics.read_text())
    # within tolerance: unchanged, file untouched
    nudged = {**committed, "k": {**committed["k"], "Average": committed["k"]["Average"] + 0.004}}
    metrics.write_text(json.dumps(nudged))
    report = run_prepare(two_envs, *args)
    assert {m.path.name: m.status for m in report.metrics}["train_metrics.json"] == "unchanged"
    assert json.loads(metrics.read_text()) == nudged
    # the data changed: conflict
    write_rows(two_envs / "a/train.jsonl", [{"responses_create_params": rcp("new"), "k": 100}])
    report = run_prepare(two_envs, *args)
    conflict = two_envs / "a/train_metrics_conflict.json"
    # the dataset's file and the collated train_metrics.json both disagree now
    assert sorted(str(m.path.absolute().relative_to(two_envs)) for m in report.conflicts) == [
        "a/train_metrics_conflict.json",
        "out/train_metrics_conflict.json",
    ]
    bad = next(m for m in report.conflicts if m.path == conflict)
    assert bad.path == conflict and any("Number of examples" in d for d in bad.differences)
    assert json.loads(metrics.read_text()) == nudged  # the committed file is kept
    assert json.loads(conflict.read_text())["Number of examples"] == 1
    report = run_prepare(two_envs, *args, "+overwrite_metrics_conflicts=true")
    assert not report.conflicts and not conflict.exists()
    assert json.loads(metrics.read_text())["Number of examples"] == 1


def test_example_validation_needs_five_rows(two_envs: Path) -> None:
    report = run_prepare(two_envs, "+config_paths=[a.yaml,b.yaml]", "+output_dirpath=out", "+mode=example_validation")
    assert len(lines(two_envs / "out/example.jsonl")) == 5 and [d.agent for d in report.datasets] == ["a"]
    write_rows(two_envs / "a/example.jsonl", [{"responses_create_params": rcp()}] * 4)
    with pytest.raises(InputError, match="exactly 5 rows"):
        run_prepare(two_envs, "+config_paths=[a.yaml]", "+output_dirpath=out2", "+mode=example_validation")


@pytest.mark.parametrize(
    ("datasets", "args", "error", "needle"),
    [
        ([{"name": "t", "type": "train", "jsonl_fpath": "a/train.jsonl"}], (), ConfigError, "needs a license"),
        ([{"name": "t", "type": "test", "jsonl_fpath": "a/train.jsonl"}], (), ConfigError, "datasets -> 0 -> type"),
        (
            [{"name": "e", "type": "example", "jsonl_fpath": "a/example.jsonl"}],
            (),
            ConfigError,
            "+mode=train_preparation",
        ),
        (
            [{"name": "t", "type": "train", "jsonl_fpath": "nope.jsonl", "license": "MIT"}],
            (),
            InputError,
            "'nope.jsonl' does not exist",
        ),
        (
            [{"name": "t", "type": "train", "jsonl_fpath": "a/train.jsonl", "license": "MIT"}],
            ("+mix=balanced",),
            ArgumentError,
            "+batch_size",
        ),
        (
            [{"name": "t", "type": "train", "jsonl_fpath": "a/train.jsonl", "license": "MIT"}],
            ("+batch_size=4",),
            ArgumentError,
            "+mix=balanced",
        ),
        (
            [{"name": "t", "type": "train", "jsonl_fpath": "a/train.jsonl", "license": "MIT"}],
            ("+mix=balanced", "+batch_size=4", "+mix_weights={a:1,zz:2}"),
            ArgumentError,
            "names unknown ['zz']",
        ),
        (
            [{"name": "t", "type": "train", "jsonl_fpath": "a/train.jsonl", "license": "MIT"}],
            ("+should_download=true",),
            ArgumentError,
            "not supported",
        ),
    ],
)
def test_mistakes_are_named(
    two_envs: Path, datasets: list[dict[str, Any]], args: tuple[str, ...], error: type[Exception], needle: str
) -> None:
    (two_envs / "c.yaml").write_text(agent_yaml("a", datasets))
    with pytest.raises(error) as e:
        run_prepare(two_envs, "+config_paths=[c.yaml]", "+output_dirpath=out", "+mode=train_preparation", *args)
    assert needle in str(e.value)


# ---- balanced mixing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sizes", "weights", "batch"),
    [
        ({"a": 100, "b": 30, "c": 7}, "proportional", 16),
        ({"a": 100, "b": 30, "c": 7}, "equal", 10),
        ({"a": 50, "b": 50}, {"a": 3, "b": 1}, 8),
        ({"a": 9, "b": 40, "c": 13, "d": 2}, {"a": 1, "b": 2, "c": 1.5, "d": 0.5}, 7),
        ({"a": 20, "b": 20, "c": 20}, "equal", 2),  # fewer slots than environments
        ({"a": 1000, "b": 300, "c": 70}, "proportional", 16),  # many batches: the carried remainders matter
    ],
)
def test_every_batch_holds_each_environment_in_proportion(sizes: dict[str, int], weights: Any, batch: int) -> None:
    plan = balanced_plan(sizes, batch_size=batch, weights=weights, seed=11)
    total = sum(sizes.values())
    raw = (
        {e: float(n) for e, n in sizes.items()}
        if weights == "proportional"
        else ({e: 1.0 for e in sizes} if weights == "equal" else {e: float(w) for e, w in weights.items()})
    )
    p = {e: w / sum(raw.values()) for e, w in raw.items()}
    assert len(plan.rows) == plan.num_batches * batch and plan.num_batches > 0
    for composition in plan.compositions():
        for env in sizes:
            assert math.floor(batch * p[env]) <= composition.get(env, 0) <= math.ceil(batch * p[env]), (
                composition,
                env,
            )
    written = Counter(env for env, _ in plan.rows)
    for env in sizes:
        assert abs(written[env] - len(plan.rows) * p[env]) < len(sizes)  # carried remainders keep shares exact
        assert {i for e, i in plan.rows if e == env} == set(range(sizes[env]))  # repeat mode: every row used
    if weights == "proportional":
        assert len(plan.rows) < total + batch  # no more than one batch of repeats
    report = plan.report()
    assert report["num_rows"] == len(plan.rows)
    assert sum(run["num_batches"] for run in report["batches"]) == plan.num_batches


def test_drop_mode_never_repeats_and_reports_leftovers() -> None:
    plan = balanced_plan({"a": 50, "b": 10}, batch_size=4, weights="equal", fill="drop", seed=0)
    assert plan.num_batches == 5
    assert all(c == {"a": 2, "b": 2} for c in plan.compositions())
    assert len(set(plan.rows)) == len(plan.rows)
    env = plan.report()["environments"]
    assert env["a"]["rows_unused"] == 40 and env["b"]["rows_unused"] == 0 and env["a"]["rows_repeated"] == 0


def test_mixing_is_seeded() -> None:
    one = balanced_plan({"a": 30, "b": 12}, batch_size=6, seed=1).rows
    assert balanced_plan({"a": 30, "b": 12}, batch_size=6, seed=1).rows == one
    assert balanced_plan({"a": 30, "b": 12}, batch_size=6, seed=2).rows != one


@pytest.mark.parametrize("weights", [{"a": 1}, {"a": 1, "b": 0}, {"a": 1, "b": -2}, "uneven"])
def test_bad_weights_are_refused(weights: Any) -> None:
    with pytest.raises(ArgumentError, match="mix_weights"):
        balanced_plan({"a": 10, "b": 10}, batch_size=4, weights=weights)


def test_runaway_repeats_are_refused() -> None:
    with pytest.raises(ArgumentError, match="mix_fill=drop"):
        balanced_plan({"a": 1000, "b": 10}, batch_size=10, weights={"a": 1, "b": 100})


def test_mixed_file_matches_its_mix_metrics(two_envs: Path) -> None:
    run_prepare(
        two_envs,
        "+config_paths=[a.yaml,b.yaml]",
        "+output_dirpath=out",
        "+mode=train_preparation",
        "+mix=balanced",
        "+batch_size=4",
        "+mix_weights=equal",
        "+seed=5",
    )
    train = lines(two_envs / "out/train.jsonl")
    mix = json.loads((two_envs / "out/train_mix_metrics.json").read_text())
    assert len(train) == mix["num_rows"] == 4 * mix["num_batches"]
    for run in mix["batches"]:
        for k in range(run["first_batch"], run["last_batch"] + 1):
            batch = Counter(r["agent_ref"]["name"] for r in train[4 * k : 4 * k + 4])
            assert dict(batch) == {e: n for e, n in run["rows_per_environment"].items() if n}
    by_agent = {
        name: Counter(
            r["responses_create_params"]["input"][0]["content"] for r in train if r["agent_ref"]["name"] == name
        )
        for name in "ab"
    }
    assert set(by_agent["a"]) == {f"a{i}" for i in range(6)} and set(by_agent["b"]) == {"b0", "b1"}
    assert mix["environments"]["b"]["rows_available"] == 4  # 2 lines x num_repeats 2
    assert len(lines(two_envs / "out/validation.jsonl")) == 2  # only train is mixed (+mix_types)
    assert not (two_envs / "out/validation_mix_metrics.json").exists()


# ---- the installed command ---------------------------------------------------------------------


def ng(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([str(BIN / command), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_command_reports_bad_rows_without_traceback(two_envs: Path) -> None:
    (two_envs / "env.yaml").write_text("")
    write_rows(two_envs / "b/train.jsonl", [{"responses_create_params": rcp()}, "{broken"])
    proc = ng(
        "ng_prepare_data",
        "+config_paths=[a.yaml,b.yaml]",
        "+output_dirpath=out",
        "+mode=train_preparation",
        cwd=two_envs,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.startswith("error: 1 invalid row(s)") and "b/train.jsonl:2: not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = ng(
        "ng_prepare_data",
        "+config_paths=[a.yaml,b.yaml]",
        "+output_dirpath=out",
        "+mode=train_preparation",
        "+skip_invalid_rows=true",
        cwd=two_envs,
    )
    assert proc.returncode == 0, proc.stderr
    assert "train: 8 rows -> out/train.jsonl" in proc.stdout and "1 invalid row(s) left out" in proc.stdout
    proc = ng("ng_prepare_data", "+config_paths=[a.yaml]", "+output_dirpath=out", "+mode=validate", cwd=two_envs)
    assert proc.returncode == 2 and "+mode='validate'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("command", "arguments"),
    [
        ("ng_prepare_data", ["config_paths", "output_dirpath", "mode", "skip_invalid_rows", "mix", "batch_size", "mix_weights"]),
        ("ng_reward_profile", ["rollouts_jsonl_fpath", "materialized_inputs_jsonl_fpath", "pass_threshold"]),
        ("ng_init_resources_server", ["entrypoint"]),
        ("ng_test", ["entrypoint", "should_validate_data"]),
    ],
)
def test_new_commands_print_help_and_are_listed(tmp_path: Path, command: str, arguments: list[str]) -> None:
    proc = ng(command, "+help=true", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: {command}"), proc.stderr
    for name in arguments:
        assert f"+{name}" in proc.stdout, name
    from ngym.cli.help import COMMANDS

    assert command in COMMANDS
