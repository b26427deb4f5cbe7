"""Datasets users already have: Parquet files and Hugging Face datasets saved to disk, mapped to rows by
a column mapping, read by ng_prepare_data and the collector; and the dataset keys of NeMo Gym's later
versions (``source``) accepted, unknown keys refused with what to do. Every file is written by the test."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ngym.data.sources import Columns, iter_rows, parse_columns, read_rows, to_row
from ngym.errors import InputError
from tests.e2e.conftest import REPO, command_env, free_port

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
datasets = pytest.importorskip("datasets")

MULTI_STEP = [json.loads(line) for line in (REPO / "resources_servers/example_multi_step/data/example.jsonl").read_text().splitlines()]


def user_table() -> list[dict[str, Any]]:
    """example_multi_step's rows as a user would keep them: chat messages, tools as JSON text, task columns."""
    return [
        {
            "messages": row["responses_create_params"]["input"],
            "tools_json": json.dumps(row["responses_create_params"]["tools"]),
            "expected_synonym_values": row["expected_synonym_values"],
            "expected_synonyms": row["expected_synonyms"],
            "row_id": row["id"],
            "note": None,
        }
        for row in MULTI_STEP
    ]


MAPPING = {"messages": "messages", "tools": "tools_json", "rename": {"row_id": "id"}}


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    pq.write_table(pa.Table.from_pylist(records), path)
    return path


def test_parquet_rows_by_the_column_mapping(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "tasks.parquet", user_table())
    rows = list(read_rows(path, Columns.model_validate(MAPPING)))
    assert len(rows) == 5
    for row, original in zip(rows, MULTI_STEP):
        assert row["responses_create_params"] == {"input": original["responses_create_params"]["input"], "tools": original["responses_create_params"]["tools"]}
        assert row["expected_synonym_values"] == original["expected_synonym_values"] and row["id"] == original["id"]
        assert "note" not in row and "messages" not in row and "tools_json" not in row
    # only the listed task fields, and a prompt column as one user message with a system prompt first
    table = write_parquet(tmp_path / "qa.parquet", [{"question": "2+2?", "answer": "4", "level": 1}, {"question": "3*5?", "answer": "15", "level": 2}])
    rows = list(read_rows(table, Columns(prompt="question", system_prompt="Answer briefly.", task_fields=["answer"], rename={"answer": "expected_answer"})))
    assert rows[1] == {
        "responses_create_params": {"input": [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "3*5?"}]},
        "expected_answer": "15",
    }


def test_a_table_in_ngyms_own_format_is_read_as_it_is(tmp_path: Path) -> None:
    records = [{"responses_create_params": json.dumps(r["responses_create_params"]), "expected_synonym_values": r["expected_synonym_values"]} for r in MULTI_STEP]
    rows = list(read_rows(write_parquet(tmp_path / "own.parquet", records)))
    assert [r["responses_create_params"] for r in rows] == [r["responses_create_params"] for r in MULTI_STEP]
    saved = tmp_path / "own_ds"
    datasets.Dataset.from_list(records).save_to_disk(str(saved))
    assert list(read_rows(saved)) == rows


def test_saved_datasets_and_dataset_dicts(tmp_path: Path) -> None:
    one = tmp_path / "one"
    datasets.Dataset.from_list(user_table()).save_to_disk(str(one))
    assert list(read_rows(one, Columns.model_validate(MAPPING))) == list(read_rows(write_parquet(tmp_path / "t.parquet", user_table()), Columns.model_validate(MAPPING)))
    both = tmp_path / "both"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(user_table()[:3]), "validation": datasets.Dataset.from_list(user_table()[3:])}).save_to_disk(str(both))
    with pytest.raises(InputError, match=r"DatasetDict with splits \['train', 'validation'\]: name one with split"):
        list(read_rows(both, Columns.model_validate(MAPPING)))
    validation = list(read_rows(both, Columns.model_validate({**MAPPING, "split": "validation"})))
    assert [r["id"] for r in validation] == [MULTI_STEP[3]["id"], MULTI_STEP[4]["id"]]
    with pytest.raises(InputError, match="has no split 'test'; its splits"):
        list(read_rows(both, Columns.model_validate({**MAPPING, "split": "test"})))


@pytest.mark.parametrize(
    ("records", "mapping", "says"),
    [
        ([{"q": "x"}], {}, "names neither prompt nor messages .*its columns: q.*columns: {prompt: question}"),
        ([{"q": "x"}], {"prompt": "question"}, "no column 'question' \\(its columns: q\\)"),
        ([{"m": "not json"}], {"messages": "m"}, "column 'm' holds text that is not JSON"),
        ([{"m": [1, 2]}], {"messages": "m"}, "must hold a list of {role, content} messages"),
    ],
)
def test_mapping_problems_name_the_row_and_the_fix(tmp_path: Path, records: list[dict[str, Any]], mapping: dict[str, Any], says: str) -> None:
    path = write_parquet(tmp_path / "bad.parquet", records)
    with pytest.raises(InputError, match=says) as caught:
        list(read_rows(path, Columns.model_validate(mapping)))
    assert f"{path} (row 1)" in str(caught.value)


def test_inputs_that_are_not_tables_or_mappings(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="Allowed keys: prompt, messages"):
        parse_columns({"prompt_column": "q"}, "+input_columns")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="not a Hugging Face dataset saved with save_to_disk"):
        list(read_rows(tmp_path / "folder"))
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text(json.dumps(MULTI_STEP[0]) + "\n")
    with pytest.raises(InputError, match="is JSONL: its lines are rows as they are"):
        list(read_rows(jsonl, Columns(prompt="q")))
    assert list(read_rows(jsonl)) == [MULTI_STEP[0]]
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        list(read_rows(tmp_path / "broken.parquet"))
    numbered = list(iter_rows(write_parquet(tmp_path / "n.parquet", user_table()), "input file", columns=Columns.model_validate(MAPPING), limit=2))
    assert [n for n, _, _ in numbered] == [1, 2] and json.loads(numbered[0][1]) == numbered[0][2]
    assert to_row({"q": "hi", "k": 0}, Columns(prompt="q"), "x") == {"responses_create_params": {"input": [{"role": "user", "content": "hi"}]}, "k": 0}


def _config(tmp_path: Path, datasets_yaml: str) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        "multi_step_agent:\n  responses_api_agents:\n    simple_agent:\n      entrypoint: app.py\n"
        "      resources_server: {type: resources_servers, name: example_multi_step}\n"
        "      model_server: {type: responses_api_models, name: policy_model}\n"
        f"      datasets:\n{datasets_yaml}"
    )
    return config


def _prepare(tmp_path: Path, config: Path, mode: str = "example_validation") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ng_prepare_data", f"+config_paths=[{config}]", f"+output_dirpath={tmp_path / 'prepared'}", f"+mode={mode}"],
        cwd=tmp_path, env=command_env(), capture_output=True, text=True, timeout=300,
    )


def test_ng_prepare_data_reads_parquet_and_saved_datasets(tmp_path: Path) -> None:
    write_parquet(tmp_path / "tasks.parquet", user_table())
    datasets.Dataset.from_list(user_table()).save_to_disk(str(tmp_path / "tasks_ds"))
    mapping = json.dumps(MAPPING)
    config = _config(tmp_path, (
        f"      - {{name: example, type: example, jsonl_fpath: tasks.parquet, columns: {mapping}}}\n"
        f"      - {{name: train, type: train, license: MIT, jsonl_fpath: tasks_ds, columns: {mapping}, source: huggingface}}\n"
    ))
    done = _prepare(tmp_path, config)
    assert done.returncode == 0, done.stdout + done.stderr
    prepared = [json.loads(line) for line in (tmp_path / "prepared" / "example.jsonl").read_text().splitlines()]
    assert len(prepared) == 5 and all(r["agent_ref"] == {"type": "responses_api_agents", "name": "multi_step_agent"} for r in prepared)
    assert [r["expected_synonym_values"] for r in prepared] == [r["expected_synonym_values"] for r in MULTI_STEP]
    metrics = json.loads((tmp_path / "tasks_metrics.json").read_text())  # beside the Parquet file
    assert metrics["Number of examples"] == 5 and metrics["columns"] == MAPPING and "source" not in metrics
    done = _prepare(tmp_path, config, "train_preparation")  # the saved dataset; its `source` accepted
    assert done.returncode == 0, done.stdout + done.stderr
    train = [json.loads(line) for line in (tmp_path / "prepared" / "train.jsonl").read_text().splitlines()]
    assert [r["responses_create_params"] for r in train] == [r["responses_create_params"] for r in prepared]
    assert json.loads((tmp_path / "tasks_ds_metrics.json").read_text())["source"] == "huggingface"


def test_dataset_keys_of_later_versions_accepted_unknown_ones_refused(tmp_path: Path) -> None:
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MULTI_STEP))
    config = _config(tmp_path, "      - {name: example, type: example, jsonl_fpath: rows.jsonl, source: {repo_id: someone/tasks}}\n")
    done = _prepare(tmp_path, config)
    assert done.returncode == 0, done.stdout + done.stderr
    config = _config(tmp_path, "      - {name: example, type: example, jsonl_fpath: missing.jsonl, source: huggingface}\n")
    done = _prepare(tmp_path, config)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "its source 'huggingface' is not downloaded by ngym: fetch the data yourself and point jsonl_fpath at it" in done.stdout + done.stderr
    config = _config(tmp_path, "      - {name: example, type: example, jsonl_fpath: rows.jsonl, revision: main, subset: all}\n")
    done = _prepare(tmp_path, config)
    out = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in out
    assert "unknown key(s) revision, subset in dataset entry 'example'" in out and "Remove or rename them" in out
    # a JSONL dataset with a column mapping: refused, saying why
    config = _config(tmp_path, "      - {name: example, type: example, jsonl_fpath: rows.jsonl, columns: {prompt: q}}\n")
    done = _prepare(tmp_path, config)
    assert done.returncode != 0 and "a column mapping is for Parquet files and saved datasets" in done.stdout + done.stderr


@pytest.mark.slow
def test_the_collector_reads_a_parquet_file(workdir: Path) -> None:
    """ng_collect_rollouts, one-shot (servers started and stopped), over a Parquet file by its column
    mapping: the scripted model plays example_multi_step and its verifier scores every row 1.0."""
    path = write_parquet(workdir / "tasks.parquet", user_table())
    out = workdir / "results" / "parquet.jsonl"
    model = "responses_api_models/openai_model/configs/openai_model.yaml"
    env = "resources_servers/example_multi_step/configs/example_multi_step.yaml"
    done = subprocess.run(
        ["ng_collect_rollouts", f"+config_paths=[{model},{env}]", f"+input_jsonl_fpath={path}", f"+output_jsonl_fpath={out}",
         "+input_columns={messages: messages, tools: tools_json, rename: {row_id: id}}", "+agent_name=example_multi_step_simple_agent", f"+head_server.port={free_port()}"],
        cwd=workdir, env=command_env(), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rollouts = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rollouts) == 5 and all(r["reward"] == 1.0 for r in rollouts), [r["reward"] for r in rollouts]
    assert sorted(r["id"] for r in rollouts) == sorted(r["id"] for r in MULTI_STEP)
