"""Config loading and deployment building (spec §1): override grammar, merge precedence,
``config_paths`` expansion, interpolation, ports, and the errors a user sees for common mistakes."""

from __future__ import annotations

import signal
import socket
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from ngym.config import ParserConfig, build_deployment, load_config, mask_secrets
from ngym.config.secrets import MASK
from ngym.errors import (
    AlmostServerError,
    ConfigError,
    ConfigFileError,
    OverrideError,
    PortError,
    ServerRefError,
    ServerTypeError,
)

REPO = Path(__file__).resolve().parents[1]
OPENAI_MODEL_YAML = REPO / "responses_api_models" / "openai_model" / "configs" / "openai_model.yaml"
RESOURCES_YAMLS = sorted((REPO / "resources_servers").glob("*/configs/*.yaml"))


# ---- helpers -------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(tmp_path: Path, *args: str, env: str | None = None, sources: dict[str, str] | None = None) -> DictConfig:
    """load_config with cwd=tmp_path and an explicit (possibly empty) env.yaml, so no stray
    env.yaml of the checkout can leak in."""
    dotenv = write(tmp_path / "env.yaml", env or "")
    pc = ParserConfig(cli_args=list(args), cwd=tmp_path, dotenv_path=dotenv)
    cfg = load_config(pc)
    if sources is not None:
        sources.update(pc.sources)
    return cfg


def plain(cfg: DictConfig) -> dict[str, Any]:
    out = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(out, dict)
    return out


def server(server_type: str, impl: str = "impl", **body: Any) -> dict[str, Any]:
    return {server_type: {impl: {"entrypoint": "app.py", **body}}}


def free_block(n: int) -> int:
    """First port of ``n`` consecutive ports that are free right now (for narrow port ranges)."""
    for start in range(23000, 30000, 17):
        ok = True
        for port in range(start, start + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return start
    pytest.skip("no block of free ports found")


@contextmanager
def fails_after(seconds: int) -> Iterator[None]:
    """Turn a hang (e.g. an include cycle loaded forever) into a test failure."""

    def _timeout(signum: int, frame: object) -> None:
        raise AssertionError(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---- override grammar ----------------------------------------------------------------------


def test_plus_adds_nested_keys_with_typed_values(tmp_path: Path) -> None:
    cfg = load(tmp_path, "+a.b.c=1", "+s=hello", "+f=0.5", "+t=true", "+n=null", "+l=[1,2,x]")
    assert plain(cfg) == {"a": {"b": {"c": 1}}, "s": "hello", "f": 0.5, "t": True, "n": None, "l": [1, 2, "x"]}


def test_plus_plus_sets_new_and_existing_keys(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "x: 1\nnested: {p: 1, q: 1}\n")
    cfg = load(tmp_path, "+config_paths=[a.yaml]", "++x=2", "++nested.q=3", "++brand_new=4")
    assert cfg.x == 2
    assert plain(cfg.nested) == {"p": 1, "q": 3}
    assert cfg.brand_new == 4


def test_plain_override_changes_existing_key(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "x: 1\nnested: {p: 1, q: 1}\n")
    cfg = load(tmp_path, "+config_paths=[a.yaml]", "x=5", "nested.q=9")
    assert cfg.x == 5
    assert plain(cfg.nested) == {"p": 1, "q": 9}


def test_plain_override_of_key_defined_only_in_env_yaml(tmp_path: Path) -> None:
    cfg = load(tmp_path, "policy_model_name=other", env="policy_model_name: gpt\n")
    assert cfg.policy_model_name == "other"


@pytest.mark.parametrize("arg", ["y=5", "nested.missing=1", "nope.deeper=1"])
def test_plain_override_of_missing_key_is_an_error_suggesting_plus(tmp_path: Path, arg: str) -> None:
    write(tmp_path / "a.yaml", "x: 1\nnested: {p: 1}\n")
    key = arg.split("=")[0]
    with pytest.raises(OverrideError) as e:
        load(tmp_path, "+config_paths=[a.yaml]", arg)
    assert f"+{key}=" in str(e.value)


def test_null_on_existing_key(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "x: 1\n")
    cfg = load(tmp_path, "+config_paths=[a.yaml]", "x=null")
    assert "x" in cfg and cfg.x is None


def test_tilde_deletes_keys_from_files(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "x: 1\nkeep: 2\nnested: {p: 1, q: 2}\n")
    cfg = load(tmp_path, "+config_paths=[a.yaml]", "~x", "~nested.p")
    data = plain(cfg)
    assert "x" not in data
    assert data["keep"] == 2
    assert data["nested"] == {"q": 2}


def test_quoted_list_of_config_paths(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "from_a: 1\n")
    write(tmp_path / "b.yaml", "from_b: 2\n")
    cfg = load(tmp_path, "+config_paths=[a.yaml,b.yaml]")
    assert cfg.from_a == 1 and cfg.from_b == 2
    assert list(cfg.config_paths) == ["a.yaml", "b.yaml"]


def test_unparseable_override_is_an_override_error(tmp_path: Path) -> None:
    with pytest.raises(OverrideError) as e:
        load(tmp_path, "+config_paths=[a.yaml")
    assert "+config_paths=[a.yaml" in str(e.value)


# ---- merge precedence and config_paths -------------------------------------------------------


def test_precedence_cli_over_env_over_later_over_earlier_file(tmp_path: Path) -> None:
    write(
        tmp_path / "first.yaml",
        """
        all4: first
        three: first
        two: first
        only_first: first
        nested: {a: first, b: first, c: first}
        lst: [1, 2, 3]
        """,
    )
    write(
        tmp_path / "second.yaml",
        """
        all4: second
        three: second
        two: second
        nested: {b: second, c: second}
        lst: [9]
        """,
    )
    env = "all4: env\nthree: env\nnested: {c: env}\n"
    cfg = load(tmp_path, "+config_paths=[first.yaml,second.yaml]", "+all4=cli", env=env)
    assert cfg.all4 == "cli"
    assert cfg.three == "env"
    assert cfg.two == "second"
    assert cfg.only_first == "first"
    # dicts merge key by key, lists are replaced
    assert plain(cfg.nested) == {"a": "first", "b": "second", "c": "env"}
    assert list(cfg.lst) == [9]


def test_file_order_decides_between_files(tmp_path: Path) -> None:
    write(tmp_path / "first.yaml", "k: first\n")
    write(tmp_path / "second.yaml", "k: second\n")
    assert load(tmp_path, "+config_paths=[second.yaml,first.yaml]").k == "first"
    assert load(tmp_path, "+config_paths=[first.yaml,second.yaml]").k == "second"


def test_config_paths_may_come_from_env_yaml(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "from_a: 1\n")
    cfg = load(tmp_path, env="config_paths: [a.yaml]\n")
    assert cfg.from_a == 1


def test_nested_config_paths_appended_breadth_first_and_deduplicated(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "config_paths: [c.yaml, a.yaml]\nk: a\nfrom_a: 1\n")
    write(tmp_path / "b.yaml", "config_paths: [d.yaml, c.yaml]\nk: b\n")
    write(tmp_path / "c.yaml", "config_paths: [e.yaml]\nk: c\n")
    write(tmp_path / "d.yaml", "k: d\n")
    write(tmp_path / "e.yaml", "k: e\nfrom_e: 5\n")
    sources: dict[str, str] = {}
    with fails_after(10):  # a.yaml lists itself: without de-duplication this never ends
        cfg = load(tmp_path, "+config_paths=[a.yaml,b.yaml]", sources=sources)
    # a, b from the command line; then a's c; then b's d (c already listed); then c's e
    assert list(cfg.config_paths) == ["a.yaml", "b.yaml", "c.yaml", "d.yaml", "e.yaml"]
    # files merge in list order: the last file that sets k wins
    assert cfg.k == "e"
    assert cfg.from_a == 1 and cfg.from_e == 5
    assert sources["from_a"] == "a.yaml" and sources["from_e"] == "e.yaml"


def test_path_listed_twice_is_loaded_once(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "config_paths: [c.yaml]\nk: a\n")
    write(tmp_path / "b.yaml", "k: b\n")
    write(tmp_path / "c.yaml", "k: c\n")
    # c is listed on the command line and again inside a: it is loaded once, at its first place,
    # so b (later in the list) wins over it
    cfg = load(tmp_path, "+config_paths=[a.yaml,c.yaml,b.yaml]")
    assert list(cfg.config_paths) == ["a.yaml", "c.yaml", "b.yaml"]
    assert cfg.k == "b"


def test_relative_config_path_resolves_from_cwd(tmp_path: Path) -> None:
    write(tmp_path / "sub" / "x.yaml", "here: true\n")
    assert load(tmp_path, "+config_paths=[sub/x.yaml]").here is True


# ---- interpolation ---------------------------------------------------------------------------


def test_policy_interpolation_stays_unresolved_until_read(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        f"+config_paths=[{OPENAI_MODEL_YAML}]",
        "+policy_base_url=http://policy:8000/v1",
        "+policy_model_name=my-model",
        env="policy_api_key: sk-from-env\n",
    )
    deployment = build_deployment(cfg)
    # what the launcher hands to children is unresolved
    text = deployment.to_yaml()
    assert "${policy_base_url}" in text
    assert "${policy_api_key}" in text
    assert "http://policy:8000/v1\n" in text  # the top-level key itself is there
    node = plain(cfg)["policy_model"]["responses_api_models"]["openai_model"]
    assert node["openai_base_url"] == "${policy_base_url}"
    # ... and resolves when a server reads its section
    resolved = OmegaConf.to_container(cfg.policy_model.responses_api_models.openai_model, resolve=True)
    assert isinstance(resolved, dict)
    assert resolved["openai_base_url"] == "http://policy:8000/v1"
    assert resolved["openai_api_key"] == "sk-from-env"
    assert resolved["openai_model"] == "my-model"


def test_undefined_interpolation_does_not_stop_loading_or_building(tmp_path: Path) -> None:
    cfg = load(tmp_path, f"+config_paths=[{OPENAI_MODEL_YAML}]")
    deployment = build_deployment(cfg)
    assert "policy_model" in deployment.servers


# ---- real repository configs -----------------------------------------------------------------


def test_repository_configs_load_with_expected_instances(tmp_path: Path) -> None:
    assert RESOURCES_YAMLS, "no resources_servers/*/configs/*.yaml in the checkout"
    paths = ",".join(str(p) for p in [OPENAI_MODEL_YAML, *RESOURCES_YAMLS])
    sources: dict[str, str] = {}
    cfg = load(tmp_path, f"+config_paths=[{paths}]", "+policy_base_url=http://x/v1", sources=sources)
    deployment = build_deployment(cfg, sources)
    types = {name: spec.type for name, spec in deployment.servers.items()}
    assert types["policy_model"] == "responses_api_models"
    assert deployment.servers["policy_model"].impl == "openai_model"
    for env in ("example_single_tool_call", "example_multi_step", "example_session_state_mgmt"):
        resources = env if env == "example_single_tool_call" else f"{env}_resources_server"
        assert types[resources] == "resources_servers"
        assert deployment.servers[resources].impl == env
        assert types[f"{env}_simple_agent"] == "responses_api_agents"
        assert deployment.servers[f"{env}_simple_agent"].impl == "simple_agent"
    assert len(deployment.servers) == 1 + 2 * len(RESOURCES_YAMLS)
    assert len(deployment.agents()) == len(RESOURCES_YAMLS)
    for spec in deployment.servers.values():
        assert (spec.dir / spec.entrypoint).is_file(), spec
        assert spec.host == "127.0.0.1"
    assert sources["policy_model"] == str(OPENAI_MODEL_YAML)
    # reserved/policy keys are not mistaken for instances
    assert "policy_base_url" not in deployment.servers and "config_paths" not in deployment.servers


# ---- hosts and ports -------------------------------------------------------------------------


def test_every_instance_gets_a_distinct_port_other_than_the_head_port(tmp_path: Path) -> None:
    start = free_block(4)
    cfg = OmegaConf.create(
        {
            "head_server": {"port": start},
            "port_range_low": start,
            "port_range_high": start + 3,
            "m": server("responses_api_models"),
            "r": server("resources_servers", domain="math"),
            "g": server("responses_api_agents"),
        }
    )
    deployment = build_deployment(cfg)
    ports = [s.port for s in deployment.servers.values()]
    # the range holds exactly the head port plus three: each instance must get a different one
    assert sorted(ports) == [start + 1, start + 2, start + 3]
    assert deployment.head.port == start
    # written back into the config the children see
    assert cfg.m.responses_api_models.impl.port == deployment.servers["m"].port
    assert cfg.m.responses_api_models.impl.host == "127.0.0.1"
    assert sorted(cfg.disallowed_ports) == sorted([start, *ports])


def test_default_head_port_is_never_assigned(tmp_path: Path) -> None:
    # a range that only holds 11000 and one other port: the head port must be skipped
    cfg = OmegaConf.create({"port_range_low": 11000, "port_range_high": 11001, "m": server("responses_api_models")})
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", 11001))
        except OSError:
            pytest.skip("port 11001 is in use on this machine")
    deployment = build_deployment(cfg)
    assert deployment.head.port == 11000
    assert deployment.servers["m"].port == 11001


def test_many_instances_get_distinct_ports_in_the_default_range(tmp_path: Path) -> None:
    cfg = OmegaConf.create({f"m{i}": server("responses_api_models") for i in range(25)})
    deployment = build_deployment(cfg)
    ports = [s.port for s in deployment.servers.values()]
    assert len(set(ports)) == 25
    assert 11000 not in ports
    assert all(10001 <= p <= 20000 for p in ports)


def test_explicit_ports_and_hosts_are_kept(tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        {
            "default_host": "0.0.0.0",
            "m": server("responses_api_models", port=15123, host="127.0.0.2"),
            "g": server("responses_api_agents"),
        }
    )
    deployment = build_deployment(cfg)
    assert deployment.servers["m"].port == 15123
    assert deployment.servers["m"].host == "127.0.0.2"
    assert deployment.servers["g"].host == "0.0.0.0"
    assert deployment.servers["g"].port not in (15123, 11000)
    assert cfg.m.responses_api_models.impl.port == 15123


def test_duplicate_explicit_ports_name_both_instances(tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        {"first_one": server("responses_api_models", port=15123), "second_one": server("responses_api_agents", port=15123)}
    )
    with pytest.raises(PortError) as e:
        build_deployment(cfg)
    message = str(e.value)
    assert "first_one" in message and "second_one" in message and "15123" in message


def test_explicit_port_equal_to_head_port_is_an_error(tmp_path: Path) -> None:
    cfg = OmegaConf.create({"m": server("responses_api_models", port=11000)})
    with pytest.raises(PortError) as e:
        build_deployment(cfg)
    assert "head_server" in str(e.value) and "11000" in str(e.value)


# ---- user mistakes ---------------------------------------------------------------------------


def test_missing_config_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as e:
        load(tmp_path, "+config_paths=[does_not_exist_123.yaml]")
    assert "does_not_exist_123.yaml" in str(e.value)


def test_missing_nested_config_file_names_the_path(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "config_paths: [gone_456.yaml]\n")
    with pytest.raises(ConfigFileError) as e:
        load(tmp_path, "+config_paths=[a.yaml]")
    assert "gone_456.yaml" in str(e.value)


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.yaml", "a: 1\nb: 2\n  c: 3\nd: 4\n")
    with pytest.raises(ConfigFileError) as e:
        load(tmp_path, "+config_paths=[bad.yaml]")
    assert f"{bad}:3" in str(e.value)


def test_invalid_env_yaml_names_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError) as e:
        load(tmp_path, env="ok: 1\nlist: [1, 2\nnext: 3\n")
    assert f"{tmp_path / 'env.yaml'}:3" in str(e.value)


def test_top_level_list_file_is_rejected(tmp_path: Path) -> None:
    write(tmp_path / "list.yaml", "- a\n- b\n")
    with pytest.raises(ConfigFileError) as e:
        load(tmp_path, "+config_paths=[list.yaml]")
    assert "list.yaml" in str(e.value)


def test_typo_in_server_type_suggests_the_right_one(tmp_path: Path) -> None:
    write(
        tmp_path / "env1.yaml",
        """
        my_env:
          resource_servers:
            my_env:
              entrypoint: app.py
              domain: math
        """,
    )
    sources: dict[str, str] = {}
    cfg = load(tmp_path, "+config_paths=[env1.yaml]", sources=sources)
    with pytest.raises(ServerTypeError) as e:
        build_deployment(cfg, sources)
    message = str(e.value)
    assert "'resources_servers'" in message
    assert "resource_servers" in message and "my_env" in message
    assert "env1.yaml" in message


def test_reference_to_missing_instance_lists_instances_of_that_type(tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        {
            "policy_model": server("responses_api_models"),
            "judge_model": server("responses_api_models"),
            "r": server("resources_servers", domain="math"),
            "agent": server(
                "responses_api_agents",
                resources_server={"type": "resources_servers", "name": "r"},
                model_server={"type": "responses_api_models", "name": "polcy_model"},
            ),
        }
    )
    with pytest.raises(ServerRefError) as e:
        build_deployment(cfg)
    message = str(e.value)
    assert "polcy_model" in message and "model_server" in message
    assert "judge_model" in message and "policy_model" in message
    assert "Did you mean 'policy_model'" in message


def test_reference_to_instance_of_wrong_type_is_an_error() -> None:
    cfg = OmegaConf.create(
        {
            "m": server("responses_api_models"),
            "agent": server("responses_api_agents", resources_server={"type": "resources_servers", "name": "m"}),
        }
    )
    with pytest.raises(ServerRefError) as e:
        build_deployment(cfg)
    assert "'m'" in str(e.value)


def test_resources_server_without_domain_is_an_almost_server() -> None:
    cfg = OmegaConf.create({"no_domain_env": server("resources_servers")})
    with pytest.raises(AlmostServerError) as e:
        build_deployment(cfg)
    message = str(e.value)
    assert "no_domain_env" in message and "domain" in message
    assert "error_on_almost_servers" in message


def test_bad_domain_value_is_an_almost_server() -> None:
    cfg = OmegaConf.create({"r": server("resources_servers", domain="mathematics")})
    with pytest.raises(AlmostServerError) as e:
        build_deployment(cfg)
    assert "domain" in str(e.value)


def test_train_dataset_without_license_is_an_almost_server() -> None:
    datasets = [{"name": "d", "type": "train", "jsonl_fpath": "x.jsonl"}]
    cfg = OmegaConf.create({"g": server("responses_api_agents", datasets=datasets)})
    with pytest.raises(AlmostServerError) as e:
        build_deployment(cfg)
    assert "license" in str(e.value)


def test_almost_servers_skipped_when_allowed() -> None:
    cfg = OmegaConf.create(
        {"error_on_almost_servers": False, "bad": server("resources_servers"), "good": server("responses_api_models")}
    )
    deployment = build_deployment(cfg)
    assert list(deployment.servers) == ["good"]


def test_override_on_mistyped_instance_name_is_an_almost_server(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        f"+config_paths=[{OPENAI_MODEL_YAML}]",
        "+policy_modle.responses_api_models.openai_model.openai_model=gpt-x",
    )
    with pytest.raises(AlmostServerError) as e:
        build_deployment(cfg)
    message = str(e.value)
    assert "policy_modle" in message and "entrypoint" in message


def test_two_implementations_under_one_type_is_an_almost_server() -> None:
    cfg = OmegaConf.create(
        {"m": {"responses_api_models": {"a": {"entrypoint": "app.py"}, "b": {"entrypoint": "app.py"}}}}
    )
    with pytest.raises(AlmostServerError) as e:
        build_deployment(cfg)
    assert "'m" in str(e.value) or "m ->" in str(e.value)


def test_all_config_errors_share_a_base_class() -> None:
    for cls in (ConfigFileError, OverrideError, ServerTypeError, ServerRefError, AlmostServerError, PortError):
        assert issubclass(cls, ConfigError)


# ---- secrets ---------------------------------------------------------------------------------


def test_mask_secrets_masks_keys_and_tokens_but_not_token_counts() -> None:
    data = {
        "policy_api_key": "sk-abc",
        "hf_token": "hf_xyz",
        "policy_base_url": "http://x",
        "m": {"responses_api_models": {"openai_model": {"openai_api_key": "sk-inner", "max_output_tokens": 512}}},
        "items": [{"api_key": "sk-in-list", "name": "keep"}],
        "empty_key": "",
    }
    masked = mask_secrets(data)
    inner = masked["m"]["responses_api_models"]["openai_model"]
    assert masked["policy_api_key"] == MASK
    assert masked["hf_token"] == MASK
    assert inner["openai_api_key"] == MASK
    assert inner["max_output_tokens"] == 512
    assert masked["policy_base_url"] == "http://x"
    assert masked["items"] == [{"api_key": MASK, "name": "keep"}]
    # the input is not modified
    assert data["policy_api_key"] == "sk-abc"
    assert "sk-" not in repr({k: v for k, v in masked.items()})


def test_mask_secrets_masks_a_list_of_keys() -> None:
    masked = mask_secrets({"policy_api_key": ["sk-one", "sk-two"], "policy_base_url": ["http://a", "http://b"]})
    assert "sk-one" not in repr(masked) and "sk-two" not in repr(masked)
    assert masked["policy_base_url"] == ["http://a", "http://b"]


def test_same_instance_defined_in_two_files_is_an_error(tmp_path: Path) -> None:
    body = "dup:\n  resources_servers:\n    impl:\n      entrypoint: app.py\n      domain: other\n"
    (tmp_path / "a.yaml").write_text(body)
    (tmp_path / "b.yaml").write_text(body)
    from ngym.config import ParserConfig, load_config
    from ngym.errors import ConfigFileError

    with pytest.raises(ConfigFileError, match=r"'dup' is defined in both a.yaml and b.yaml"):
        load_config(ParserConfig(cli_args=["+config_paths=[a.yaml,b.yaml]"], cwd=tmp_path, skip_load_from_dotenv=True))
    # overriding a setting of an instance from a later file is fine
    (tmp_path / "c.yaml").write_text("dup:\n  resources_servers:\n    impl:\n      domain: math\n")
    cfg = load_config(ParserConfig(cli_args=["+config_paths=[a.yaml,c.yaml]"], cwd=tmp_path, skip_load_from_dotenv=True))
    assert cfg.dup.resources_servers.impl.domain == "math"
