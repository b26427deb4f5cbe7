"""The installed ``ng_*`` console scripts, run as a user runs them (spec §2): help, dumped config,
version, status, and the errors a user sees for common mistakes (no tracebacks)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
OPENAI_MODEL_YAML = REPO / "responses_api_models" / "openai_model" / "configs" / "openai_model.yaml"
SINGLE_TOOL_YAML = REPO / "resources_servers" / "example_single_tool_call" / "configs" / "example_single_tool_call.yaml"

COMMANDS = {
    "ng_run": "ngym.cli.run",
    "ng_collect_rollouts": "ngym.cli.collect",
    "ng_status": "ngym.cli.status",
    "ng_dump_config": "ngym.cli.dump_config",
    "ng_version": "ngym.cli.version",
    "ng_help": "ngym.cli.help",
}
#: every command, for running one (COMMANDS: the ones whose help is checked, concurrently)
ALL_COMMANDS = {
    **COMMANDS,
    "ng_viewer": "ngym.cli.viewer",
    "ng_prepare_data": "ngym.cli.prepare_data",
    "ng_reward_profile": "ngym.cli.reward_profile",
    "ng_init_resources_server": "ngym.cli.init_resources_server",
    "ng_test": "ngym.cli.test",
    "ng_export": "ngym.cli.export",
    "ng_eval": "ngym.cli.eval",
}
TIMEOUT_S = 60


def argv(command: str, *args: str) -> list[str]:
    """The console script next to this interpreter; the module's ``main`` if it is not installed."""
    script = BIN / command
    if script.exists():
        return [str(script), *args]
    code = f"import sys; sys.argv[0] = {command!r}; from {ALL_COMMANDS[command]} import main; main()"
    return [sys.executable, "-c", code, *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e.pop("NEMO_GYM_CONFIG_DICT", None)
    e["PYTHONUNBUFFERED"] = "1"
    return e


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A current directory with an empty env.yaml, so a stray env.yaml of the checkout is not used."""
    (tmp_path / "env.yaml").write_text("")
    return tmp_path


def ng(command: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv(command, *args), cwd=cwd, env=env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )


def assert_user_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Non-zero exit, one ``error:`` paragraph on stderr naming ``needles``, no traceback."""
    assert proc.returncode != 0, proc
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    message = proc.stderr.strip()
    assert message.startswith("error:"), proc.stderr
    assert "\n\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    return message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- help ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def help_outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], subprocess.CompletedProcess[str]]:
    """Every command with both help flags, run concurrently (startup time dominates)."""
    cwd = tmp_path_factory.mktemp("help")
    (cwd / "env.yaml").write_text("")
    procs = {
        (command, flag): subprocess.Popen(
            argv(command, flag), cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for command in COMMANDS
        for flag in ("+help=true", "--help")
    }
    out = {}
    for key, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        out[key] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize("flag", ["+help=true", "--help"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_prints_help(
    help_outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]], command: str, flag: str
) -> None:
    proc = help_outputs[(command, flag)]
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: {command}"), proc.stdout
    assert "Traceback" not in proc.stderr
    assert "+key=value" in proc.stdout


def test_collect_rollouts_help_lists_its_arguments(
    help_outputs: dict[tuple[str, str], subprocess.CompletedProcess[str]],
) -> None:
    text = help_outputs[("ng_collect_rollouts", "+help=true")].stdout
    for name in ("input_jsonl_fpath", "output_jsonl_fpath", "agent_name", "limit", "num_repeats", "num_repeats_add_seed"):
        assert f"+{name}" in text
    assert "required" in text


def test_help_lists_every_command(workdir: Path) -> None:
    proc = ng("ng_help", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert command in proc.stdout


# ---- ng_dump_config --------------------------------------------------------------------------


def test_dump_config_prints_resolved_yaml_with_secrets_masked_and_ports_filled(workdir: Path) -> None:
    proc = ng(
        "ng_dump_config",
        f"+config_paths=[{OPENAI_MODEL_YAML},{SINGLE_TOOL_YAML}]",
        "+policy_base_url=http://policy.example:8000/v1",
        "+policy_api_key=sk-secret-xyz",
        "+policy_model_name=m",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sk-secret-xyz" not in proc.stdout and "sk-secret-xyz" not in proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["policy_api_key"] == "****"
    model = cfg["policy_model"]["responses_api_models"]["openai_model"]
    assert model["openai_api_key"] == "****"
    # interpolations resolved
    assert model["openai_base_url"] == "http://policy.example:8000/v1"
    assert model["openai_model"] == "m"
    assert "${" not in proc.stdout
    # every instance has a host and a distinct port, none is the head port
    bodies = [
        model,
        cfg["example_single_tool_call"]["resources_servers"]["example_single_tool_call"],
        cfg["example_single_tool_call_simple_agent"]["responses_api_agents"]["simple_agent"],
    ]
    ports = [b["port"] for b in bodies]
    assert all(isinstance(p, int) and p > 0 for p in ports)
    assert len(set(ports)) == 3
    assert cfg["head_server"] == {"host": "127.0.0.1", "port": 11000}
    assert 11000 not in ports
    assert all(b["host"] == "127.0.0.1" for b in bodies)
    assert set(ports) < set(cfg["disallowed_ports"])


def test_dump_config_reads_policy_values_from_env_yaml(workdir: Path) -> None:
    (workdir / "env.yaml").write_text(
        "policy_base_url: http://from-env/v1\npolicy_api_key: sk-env-secret\npolicy_model_name: env-model\n"
    )
    proc = ng("ng_dump_config", f"+config_paths=[{OPENAI_MODEL_YAML}]", "+policy_model_name=cli-model", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "sk-env-secret" not in proc.stdout
    model = yaml.safe_load(proc.stdout)["policy_model"]["responses_api_models"]["openai_model"]
    assert model["openai_base_url"] == "http://from-env/v1"
    assert model["openai_model"] == "cli-model"  # the command line wins over env.yaml


# ---- user mistakes ---------------------------------------------------------------------------


def test_missing_config_file(workdir: Path) -> None:
    proc = ng("ng_dump_config", "+config_paths=[no_such_config_789.yaml]", cwd=workdir)
    assert_user_error(proc, "no_such_config_789.yaml")


def test_typo_in_server_type(workdir: Path) -> None:
    (workdir / "typo.yaml").write_text(
        textwrap.dedent(
            """
            weather:
              resource_servers:
                example_single_tool_call:
                  entrypoint: app.py
                  domain: agent
            """
        )
    )
    # ng_run must refuse before starting anything (the timeout guards against a hang)
    proc = ng("ng_run", "+config_paths=[typo.yaml]", f"+head_server.port={free_port()}", cwd=workdir)
    assert_user_error(proc, "resource_servers", "resources_servers", "weather")


def test_unknown_reference(workdir: Path) -> None:
    (workdir / "ref.yaml").write_text(
        textwrap.dedent(
            """
            my_agent:
              responses_api_agents:
                simple_agent:
                  entrypoint: app.py
                  resources_server: {type: resources_servers, name: example_single_tool_call}
                  model_server: {type: responses_api_models, name: policy_modell}
            """
        )
    )
    proc = ng(
        "ng_dump_config",
        f"+config_paths=[{OPENAI_MODEL_YAML},{SINGLE_TOOL_YAML},ref.yaml]",
        "+policy_base_url=http://x/v1",
        "+policy_api_key=k",
        "+policy_model_name=m",
        cwd=workdir,
    )
    assert_user_error(proc, "policy_modell", "policy_model", "my_agent")


def test_dump_config_without_policy_base_url(workdir: Path) -> None:
    proc = ng(
        "ng_dump_config",
        f"+config_paths=[{OPENAI_MODEL_YAML}]",
        "+policy_api_key=sk-secret-xyz",
        "+policy_model_name=m",
        cwd=workdir,
    )
    message = assert_user_error(proc, "policy_base_url")
    assert "sk-secret-xyz" not in message and "sk-secret-xyz" not in proc.stdout


def test_collect_rollouts_without_input_path(workdir: Path) -> None:
    proc = ng("ng_collect_rollouts", "+output_jsonl_fpath=out.jsonl", cwd=workdir)
    assert_user_error(proc, "input_jsonl_fpath")


def test_unparseable_override(workdir: Path) -> None:
    proc = ng("ng_dump_config", "+config_paths=[a.yaml", cwd=workdir)
    assert_user_error(proc, "+config_paths=[a.yaml")


def test_run_without_servers(workdir: Path) -> None:
    proc = ng("ng_run", f"+head_server.port={free_port()}", cwd=workdir)
    assert_user_error(proc, "config_paths")


def test_collect_rollouts_without_a_deployment(workdir: Path) -> None:
    (workdir / "in.jsonl").write_text(json.dumps({"responses_create_params": {"input": "hi"}}) + "\n")
    port = free_port()
    proc = ng(
        "ng_collect_rollouts",
        "+input_jsonl_fpath=in.jsonl",
        "+output_jsonl_fpath=out.jsonl",
        "+agent_name=a",
        f"+head_server.port={port}",
        cwd=workdir,
    )
    assert_user_error(proc, str(port))


# ---- ng_version, ng_status -------------------------------------------------------------------


def test_version_json(workdir: Path) -> None:
    proc = ng("ng_version", "+json=true", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert {"ngym", "python", "dependencies", "system"} <= set(data)
    assert data["python"] == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(data["dependencies"], dict) and data["dependencies"]
    assert isinstance(data["system"], dict)


def test_version_text(workdir: Path) -> None:
    proc = ng("ng_version", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ngym ")
    assert "Python" in proc.stdout


def test_status_without_a_deployment(workdir: Path) -> None:
    port = free_port()
    proc = ng("ng_status", f"+head_server.port={port}", cwd=workdir)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    output = proc.stdout + proc.stderr
    assert f"127.0.0.1:{port}" in output
    assert "ng_run" in output


# ---- issue 15: a typo, a second run or a bad value destroys nothing --------------------------

#: per command: a mistyped key, the key it should suggest, and the arguments that are otherwise valid
TYPOS = {
    "ng_collect_rollouts": ("+resum=true", "+resume", ["+input_jsonl_fpath=in.jsonl", "+output_jsonl_fpath=out.jsonl"]),
    "ng_run": ("+max_restart=1", "+max_restarts", [f"+config_paths=[{SINGLE_TOOL_YAML}]"]),
    "ng_dump_config": ("+startup_timout_s=1", "+startup_timeout_s", [f"+config_paths=[{OPENAI_MODEL_YAML}]"]),
    "ng_status": ("+head_servr.port=1", "+head_server", []),
    "ng_version": ("+jsn=true", "+json", []),
    "ng_help": ("+verbose=true", None, []),
    "ng_viewer": ("+jsonl_fpth=x.jsonl", "+jsonl_fpath", ["+jsonl_fpath=x.jsonl"]),
    "ng_prepare_data": ("+output_dirpth=o", "+output_dirpath", [f"+config_paths=[{SINGLE_TOOL_YAML}]"]),
    "ng_reward_profile": ("+pass_treshold=0.5", "+pass_threshold", ["+rollouts_jsonl_fpath=x.jsonl"]),
    "ng_init_resources_server": ("+entrypont=x", "+entrypoint", ["+entrypoint=resources_servers/x"]),
    "ng_test": ("+should_validate=true", "+should_validate_data", ["+entrypoint=resources_servers/x"]),
    "ng_export": ("+min_rewrd=1", "+min_reward", ["+input_jsonl_fpath=a.jsonl", "+output_jsonl_fpath=b.jsonl"]),
    "ng_eval": ("+num_repeat=4", "+num_repeats", ["+input_jsonl_fpath=a.jsonl", "+output_jsonl_fpath=b.jsonl"]),
}


@pytest.mark.parametrize("command", TYPOS)
def test_every_command_refuses_an_unknown_key_with_a_suggestion(workdir: Path, command: str) -> None:
    typo, suggestion, valid = TYPOS[command]
    proc = ng(command, *valid, typo, cwd=workdir)
    message = assert_user_error(proc, typo.split("=")[0].split(".")[0], "unknown argument")
    if suggestion:
        assert f"did you mean {suggestion}?" in message
    assert proc.returncode == 2
    assert not (workdir / "resources_servers").exists() and not (workdir / "b.jsonl").exists()  # nothing was done


def test_keys_the_config_files_define_or_interpolate_are_not_unknown(workdir: Path) -> None:
    proc = ng(
        "ng_dump_config", f"+config_paths=[{OPENAI_MODEL_YAML}]", "+policy_base_url=http://x/v1",
        "+policy_api_key=sk-a", "+policy_model_name=m", "++policy_model.responses_api_models.openai_model.port=12345",
        cwd=workdir,
    )
    assert proc.returncode == 0, proc.stderr
    assert "port: 12345" in proc.stdout


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_limit_below_one_is_an_error(workdir: Path, limit: str) -> None:
    proc = ng("ng_collect_rollouts", "+input_jsonl_fpath=in.jsonl", "+output_jsonl_fpath=out.jsonl", f"+limit={limit}", cwd=workdir)
    assert_user_error(proc, f"+limit={limit}", "greater than or equal to 1")


def collect_args(*extra: str) -> list[str]:
    return ["+input_jsonl_fpath=in.jsonl", "+output_jsonl_fpath=out.jsonl", "+agent_name=a",
            f"+head_server.port={free_port()}", *extra]


def test_output_that_is_the_input_is_refused(workdir: Path) -> None:
    data = json.dumps({"responses_create_params": {"input": "hi"}}) + "\n"
    (workdir / "in.jsonl").write_text(data)
    for output in ("in.jsonl", "./in.jsonl", str(workdir / "in.jsonl")):
        proc = ng("ng_collect_rollouts", "+input_jsonl_fpath=in.jsonl", f"+output_jsonl_fpath={output}", "+resume=true",
                  cwd=workdir)
        assert_user_error(proc, "in.jsonl", "also a file this run writes")
    proc = ng("ng_collect_rollouts", "+input_jsonl_fpath=in_materialized_inputs.jsonl", "+output_jsonl_fpath=in.jsonl",
              cwd=workdir)  # the input is a file the run would write next to the output
    assert_user_error(proc, "would be overwritten")
    assert (workdir / "in.jsonl").read_text() == data


def test_a_non_empty_output_is_never_truncated_without_a_choice(workdir: Path) -> None:
    (workdir / "in.jsonl").write_text(json.dumps({"responses_create_params": {"input": "hi"}}) + "\n")
    kept = "".join(json.dumps({"_ng_task_index": i, "_ng_rollout_index": 0, "reward": 1.0}) + "\n" for i in range(30))
    (workdir / "out.jsonl").write_text(kept)
    proc = ng("ng_collect_rollouts", *collect_args(), cwd=workdir)
    assert_user_error(proc, "out.jsonl", "30 line(s)", "+resume=true", "+overwrite=true")
    proc = ng("ng_collect_rollouts", *collect_args("+resume=true", "+overwrite=true"), cwd=workdir)
    assert_user_error(proc, "pass one of them")
    assert (workdir / "out.jsonl").read_text() == kept


def test_an_output_that_is_a_directory_or_not_writable_is_refused_up_front(workdir: Path) -> None:
    (workdir / "in.jsonl").write_text(json.dumps({"responses_create_params": {"input": "hi"}}) + "\n")
    (workdir / "results").mkdir()
    proc = ng("ng_collect_rollouts", "+input_jsonl_fpath=in.jsonl", "+output_jsonl_fpath=results", cwd=workdir)
    assert_user_error(proc, "is a directory")
    proc = ng("ng_collect_rollouts", "+input_jsonl_fpath=in.jsonl", "+output_jsonl_fpath=/proc/ngym/out.jsonl", cwd=workdir)
    assert_user_error(proc, "/proc/ngym/out.jsonl", "another +output_jsonl_fpath")


def test_secrets_are_masked_in_override_and_argument_errors(workdir: Path) -> None:
    secret = "sk-live-9f8e7d6c5b4a"
    proc = ng("ng_dump_config", f"+config_paths=[{OPENAI_MODEL_YAML}]", f"+policy_api_key={secret}'oops", cwd=workdir)
    assert_user_error(proc, "policy_api_key")
    assert secret not in proc.stderr + proc.stdout
    proc = ng("ng_dump_config", f"+config_paths=[{OPENAI_MODEL_YAML}]", f"+policy_api_key={secret}",
              "+policy_base_url=x", "+policy_model_name=m", "+head_server.port=99999", cwd=workdir)
    assert_user_error(proc, "99999", "out of range")
    assert secret not in proc.stderr + proc.stdout


@pytest.mark.parametrize("port", ["70000", "-5", "abc"])
def test_an_out_of_range_port_is_a_clear_error(workdir: Path, port: str) -> None:
    proc = ng("ng_status", f"+head_server.port={port}", cwd=workdir)
    assert_user_error(proc, "head_server", port)


def test_a_port_with_only_time_wait_connections_is_free() -> None:
    from ngym.config.deployment import _port_is_free

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end of the connection waits in TIME-WAIT
    client.recv(1)
    client.close()
    server.close()
    states = subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True).stdout
    if "TIME-WAIT" not in states:
        pytest.skip("no TIME-WAIT connection to test with (ss missing?)")
    assert _port_is_free("127.0.0.1", port)
    with socket.socket() as busy:  # a listening server still makes it taken
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert not _port_is_free("127.0.0.1", port)
