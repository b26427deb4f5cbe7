"""Replicas (``num_replicas``): ports in the deployment, session ids that name the replica, a
replica refusing sessions it did not start, and the client's balancing with episode affinity."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import orjson
import pytest
from omegaconf import OmegaConf

from ngym.config.deployment import build_deployment
from ngym.errors import AlmostServerError, ConfigError, FailureKind, ReplicaLost, classify_failure
from ngym.server import sessions
from ngym.server.client import ReplicaPool, ServerClient, instance_replicas, instance_urls, make_http_client
from ngym.server.sessions import REPLICA_ENV, SessionCookie, foreign_session, new_session_id, replica_of

pytestmark = pytest.mark.anyio

COUNTER = "example_session_state_mgmt_resources_server"


def config(num_replicas: Any = 3, **more: Any) -> Any:
    return OmegaConf.create({
        COUNTER: {"resources_servers": {"example_session_state_mgmt": {
            "entrypoint": "app.py", "domain": "agent", "num_replicas": num_replicas, **more}}},
    })


def test_replicas_get_their_own_ports_written_into_the_config() -> None:
    cfg = config(3)
    deployment = build_deployment(cfg)
    spec = deployment.servers[COUNTER]
    ports = list(cfg[COUNTER].resources_servers.example_session_state_mgmt.replica_ports)
    assert len(ports) == len(set(ports)) == 3 and ports[0] == spec.port
    assert [r.key for r in spec.replicas()] == [COUNTER, f"{COUNTER}#1", f"{COUNTER}#2"]
    assert [r.port for r in spec.replicas()] == ports
    assert set(ports) <= set(cfg.disallowed_ports)
    # a process reading the config back (a client, a child server) sees the same replicas
    assert instance_replicas(cfg) == {COUNTER: [f"http://127.0.0.1:{p}" for p in ports]}
    assert instance_urls(cfg) == {COUNTER: f"http://127.0.0.1:{ports[0]}"}


def test_one_replica_is_one_process() -> None:
    deployment = build_deployment(config(1))
    assert deployment.servers[COUNTER].replicas() == [deployment.servers[COUNTER]]
    assert instance_replicas(config(1)) == {}


@pytest.mark.parametrize("bad", [0, -2, "many"])
def test_a_bad_num_replicas_names_the_key(bad: Any) -> None:
    with pytest.raises(AlmostServerError, match="num_replicas"):
        build_deployment(config(bad))


def test_replicas_cannot_be_colocated() -> None:
    cfg = config(2)
    cfg.colocate = True
    with pytest.raises(ConfigError, match="num_replicas"):
        build_deployment(cfg)


def test_replica_ports_that_do_not_match_are_an_error() -> None:
    with pytest.raises(ConfigError, match="replica_ports"):
        build_deployment(config(3, port=12001, replica_ports=[12001, 12002]))


def test_session_ids_name_the_replica_and_the_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REPLICA_ENV, raising=False)
    plain = new_session_id()
    assert replica_of(plain) is None or not plain.startswith("r")
    assert not foreign_session(plain)  # an unreplicated server accepts any session it signed
    monkeypatch.setenv(REPLICA_ENV, "2")
    sid = new_session_id()
    cookie = SessionCookie(f"X___{COUNTER}", b"k" * 32)
    assert replica_of(cookie.value(sid)) == 2
    assert not foreign_session(sid)
    assert foreign_session(plain)  # a session from elsewhere
    monkeypatch.setenv(REPLICA_ENV, "1")
    assert foreign_session(sid)  # replica 1 does not hold replica 2's sessions
    monkeypatch.setenv(REPLICA_ENV, "2")
    monkeypatch.setattr(sessions, "_BOOT", "feedbeef")
    assert foreign_session(sid)  # replica 2 restarted: its old sessions are gone


async def test_a_replica_answers_503_replica_lost_for_a_session_it_does_not_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the fast path and through the full stack: never a fresh, empty state."""
    monkeypatch.setenv(REPLICA_ENV, "0")
    from resources_servers.example_session_state_mgmt.app import CounterResourcesServer

    server = CounterResourcesServer.from_global_config(config(3), COUNTER)
    app = server.build_app()
    name = f"CounterResourcesServer___{COUNTER}"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://r0") as http:
        seeded = await http.post("/seed_session", json={"initial_count": 1, "expected_count": 3})
        assert seeded.status_code == 200
        mine = seeded.cookies[name]
        assert replica_of(mine) == 0
        ok = await http.post("/increment_counter", json={"count": 2}, cookies={name: mine})
        assert ok.status_code == 200
        other = SessionCookie(name).value("r1-00000000-" + "0" * 24)
        for path, body in (("/increment_counter", {"count": 2}), ("/get_counter_value", {})):
            lost = await http.post(path, json=body, cookies={name: other})
            assert lost.status_code == 503, lost.text
            assert lost.json()["kind"] == "replica_lost" and lost.json()["retryable"] is True
            assert COUNTER in lost.json()["error"]
        # the full stack (a body the fast path leaves to FastAPI) answers the same
        lost = await http.post("/get_counter_value", content=b"{}", headers={"content-type": "text/plain"},
                               cookies={name: other})
        assert lost.status_code == 503 and lost.json()["kind"] == "replica_lost"


def test_replica_lost_is_a_retryable_failure_of_its_own_kind() -> None:
    assert classify_failure(ReplicaLost("gone"), FailureKind.RESOURCES_ERROR) == (FailureKind.REPLICA_LOST, True)
    assert not FailureKind.REPLICA_LOST.infrastructure
    assert FailureKind.parse("replica_lost") is FailureKind.REPLICA_LOST


# ---- the client: least in flight, affinity, lost replicas ---------------------------------------


class FakeReplicas:
    """Three replicas behind an httpx mock transport (a unit test of the client only): each
    starts sessions named after itself, records which sessions reached it, answers slowly enough
    for calls to overlap."""

    def __init__(self, count: int = 3) -> None:
        self.urls = [f"http://127.0.0.1:{9000 + i}" for i in range(count)]
        self.hits: list[list[str]] = [[] for _ in range(count)]
        self.dead: set[int] = set()
        self.restarted: set[int] = set()
        self.ids = itertools.count()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        index = self.urls.index(f"{request.url.scheme}://{request.url.host}:{request.url.port}")
        if index in self.dead:
            raise httpx.ConnectError("refused", request=request)
        await asyncio.sleep(0.001 * (next(self.ids) % 5))
        cookie = request.headers.get("cookie", "")
        if cookie:
            sid = cookie.partition("=")[2]
            if index in self.restarted or replica_of(sid) != index:
                return httpx.Response(503, json={"kind": "replica_lost", "error": "not here", "retryable": True})
            self.hits[index].append(sid)
            return httpx.Response(200, json={"replica": index})
        sid = f"r{index}-boot-{next(self.ids)}.sig"
        self.hits[index].append(sid)
        return httpx.Response(200, json={"replica": index}, headers={"set-cookie": f"Counter___{COUNTER}={sid}; Path=/"})


def client_for(replicas: FakeReplicas) -> ServerClient:
    http = make_http_client(transport=httpx.MockTransport(replicas.handle))  # keeps no cookies
    return ServerClient({COUNTER: replicas.urls[0]}, http, replicas={COUNTER: replicas.urls})


async def episode(client: ServerClient, steps: int = 4) -> tuple[int, list[int]]:
    seeded = await client.post(COUNTER, "/seed_session", json={})
    cookies = dict(seeded.cookies)
    where = []
    for _ in range(steps):
        answer = await client.post(COUNTER, "/step", json={}, cookies=cookies)
        assert answer.status_code == 200, answer.text
        where.append(answer.json()["replica"])
    return seeded.json()["replica"], where


async def test_episodes_stay_on_their_replica_and_load_spreads() -> None:
    replicas = FakeReplicas()
    client = client_for(replicas)
    results = await asyncio.gather(*(episode(client) for _ in range(300)))
    for seeded_on, steps in results:
        assert steps == [seeded_on] * len(steps)  # every call of the episode reached its replica
    counts = [sum(1 for s, _ in results if s == i) for i in range(3)]
    assert min(counts) >= 50, counts  # least in flight spreads new episodes
    pool = client.pools[COUNTER]
    assert pool.in_flight == [0, 0, 0] and sum(pool.calls) == 300 * 5
    await client.aclose()


async def test_a_dead_replica_fails_its_episodes_as_replica_lost_and_new_ones_go_elsewhere() -> None:
    replicas = FakeReplicas()
    client = client_for(replicas)
    seeded = [await client.post(COUNTER, "/seed_session", json={}) for _ in range(6)]
    on = {s.json()["replica"] for s in seeded}
    assert on == {0, 1, 2}
    replicas.dead.add(1)
    for s in seeded:
        if s.json()["replica"] == 1:
            with pytest.raises(ReplicaLost, match=f"replica 1 of {COUNTER!r}"):
                await client.post(COUNTER, "/step", json={}, cookies=dict(s.cookies))
        else:
            assert (await client.post(COUNTER, "/step", json={}, cookies=dict(s.cookies))).status_code == 200
    fresh = [await client.post(COUNTER, "/seed_session", json={}) for _ in range(10)]
    assert all(f.json()["replica"] != 1 for f in fresh)  # a refused replica is skipped, nothing lost
    await client.aclose()


async def test_a_restarted_replica_is_lost_for_old_episodes_and_serves_new_ones() -> None:
    replicas = FakeReplicas()
    client = client_for(replicas)
    old = [await client.post(COUNTER, "/seed_session", json={}) for _ in range(3)]
    replicas.restarted.add(0)
    for s in old:
        if s.json()["replica"] == 0:
            with pytest.raises(ReplicaLost, match="restarted"):
                await client.post(COUNTER, "/step", json={}, cookies=dict(s.cookies))
    await client.aclose()


def test_a_cookie_naming_a_replica_that_does_not_exist_is_lost() -> None:
    pool = ReplicaPool(COUNTER, ["http://a", "http://b"])
    assert pool.bound({f"X___{COUNTER}": "r5-x-y.sig"}) == 5
    assert pool.bound({f"X___{COUNTER}": "abc.sig"}) is None
    assert pool.bound({"X___other": "r1-x-y.sig"}) is None
    client = ServerClient({COUNTER: "http://a"}, replicas={COUNTER: ["http://a", "http://b"]})
    with pytest.raises(ReplicaLost, match="2 replicas"):
        asyncio.run(client.post(COUNTER, "/step", cookies={f"X___{COUNTER}": "r5-x-y.sig"}))


def test_body_of_replica_lost_is_json() -> None:
    body = orjson.loads(sessions.replica_lost_body(f"X___{COUNTER}", "r1-abc"))
    assert body["kind"] == "replica_lost" and body["server"] == COUNTER
