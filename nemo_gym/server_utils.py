"""``from nemo_gym.server_utils import ServerClient, SESSION_ID_KEY, get_response_json, raise_for_status``
(environments) and ``HEAD_SERVER_KEY_NAME, BaseServerConfig`` (NeMo RL)."""

from ngym.interop.nemo import AioReply, ServerClient, get_response_json, raise_for_status
from ngym.server.sessions import SESSION_ID_KEY
from ngym.training.compat import HEAD_SERVER_KEY_NAME, BaseServerConfig

__all__ = [
    "HEAD_SERVER_KEY_NAME",
    "SESSION_ID_KEY",
    "AioReply",
    "BaseServerConfig",
    "ServerClient",
    "get_response_json",
    "raise_for_status",
]
