"""The head server: how clients, tools and trainers find every server of a deployment.

``GET /global_config_dict_yaml`` returns the resolved config as a JSON-encoded YAML string (secrets
masked), ``GET /server_instances`` one entry per server (name, kind, URL, pid, status, uptime).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from omegaconf import OmegaConf

from ngym.config.deployment import Deployment
from ngym.config.secrets import mask_secrets


def build_head_app(deployment: Deployment, instances: Callable[[], list[dict[str, Any]]]) -> FastAPI:
    app = FastAPI(title="ngym head server", docs_url=None, redoc_url=None)
    started = time.time()

    def config_json() -> str:
        # read at each call: a replica the launcher placed again elsewhere (Ray) has a new address
        container = OmegaConf.to_container(deployment.config, resolve=False)
        return json.dumps(OmegaConf.to_yaml(OmegaConf.create(mask_secrets(container))))

    @app.get("/")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "servers": len(deployment.servers), "uptime_seconds": time.time() - started}

    @app.get("/global_config_dict_yaml")
    async def global_config_dict_yaml() -> Response:
        return Response(config_json(), media_type="application/json")

    @app.get("/server_instances")
    async def server_instances() -> list[dict[str, Any]]:
        return instances()

    return app
