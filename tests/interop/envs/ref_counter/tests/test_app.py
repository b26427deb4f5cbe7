from unittest.mock import MagicMock

from nemo_gym.server_utils import ServerClient
from resources_servers.ref_counter.app import CounterConfig, CounterServer


def test_state_is_per_instance() -> None:
    config = CounterConfig(host="0.0.0.0", port=8080, entrypoint="", name="")
    a = CounterServer(config=config, server_client=MagicMock(spec=ServerClient))
    b = CounterServer(config=config, server_client=MagicMock(spec=ServerClient))
    a.session_id_to_counter["s"] = 1
    assert b.session_id_to_counter == {}
