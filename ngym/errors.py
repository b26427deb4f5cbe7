"""Every error ngym raises on purpose.

    NgymError                      base: a message meant for a person, printed without a traceback
    ├── ConfigError                a config file, key or command-line override is wrong
    │   ├── ConfigFileError        a config path is missing or is not valid YAML
    │   ├── OverrideError          a command-line override cannot be parsed or applied
    │   ├── ServerTypeError        an instance names a server type that does not exist
    │   ├── AlmostServerError      an instance looks like a server but fails validation
    │   ├── ServerRefError         a reference names an instance that does not exist
    │   ├── PortError              a port is taken or assigned twice
    │   └── ArgumentError          a command's own argument is missing or invalid
    ├── InputError                 a JSONL input row is malformed (names file:line)
    ├── OutputError                an output file cannot be written safely (locked, would be overwritten, disk full)
    ├── DeploymentError            servers could not be started, or one died
    ├── TransportError             no (complete) answer from another server over a transport
    │   ├── ConnectError           could not connect (refused, unreachable, DNS)
    │   ├── RemoteProtocolError    the connection broke, or the answer was incomplete
    │   ├── ReplicaLost            the replica that holds an episode's session is gone (``replica_lost``)
    │   └── TransportTimeout       no answer in time
    │       ├── ConnectTimeout     ... while connecting
    │       └── ReadTimeout        ... while waiting for the answer
    ├── LocalModelError            the embedded local model (ngym.models.llama)
    │   ├── WeightsError           weights cannot be found, joined or verified
    │   └── LlamaServerError       llama-server is missing, did not start, or died
    ├── RolloutError               one rollout failed (typed; a bad rollout is data, not a crash);
    │   │                          ``kind`` is a :class:`FailureKind`, see :func:`classify_failure`
    │   └── VerifierError          an environment's verify could not score a rollout (``verifier_error``)
    └── ToolError                  a tool call the model made cannot be answered; the model sees the message

Messages name what is wrong (key, value, file) and how to fix it.

The transport errors also derive from httpx's matching exception (``TransportError`` from
``httpx.TransportError``, ``ReadTimeout`` from ``httpx.ReadTimeout``...): code that catches
``httpx.HTTPError`` around :class:`~ngym.server.client.ServerClient` calls keeps working, whichever
transport (aiohttp, in-process, httpx) carried the call.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import NamedTuple

import httpx


class NgymError(Exception):
    """Base of all ngym errors: ``str(err)`` is a complete, human-readable message."""


def error_class(name: str) -> type[NgymError]:
    """The class of this module named ``name`` (an error reported by another process), else :class:`NgymError`."""
    found = globals().get(name)
    return found if isinstance(found, type) and issubclass(found, NgymError) else NgymError


class ConfigError(NgymError):
    pass


class ConfigFileError(ConfigError):
    pass


class OverrideError(ConfigError):
    pass


class ServerTypeError(ConfigError):
    pass


class AlmostServerError(ConfigError):
    pass


class ServerRefError(ConfigError):
    pass


class PortError(ConfigError):
    pass


class ArgumentError(ConfigError):
    pass


class InputError(NgymError):
    pass


class OutputError(NgymError):
    """An output file is in use by another run, would be overwritten, is the input, or cannot be written."""


class DeploymentError(NgymError):
    pass


class TransportError(NgymError, httpx.TransportError):
    """No (complete) answer from a server; the message names the URL."""


class ConnectError(TransportError, httpx.ConnectError):
    pass


class RemoteProtocolError(TransportError, httpx.RemoteProtocolError):
    pass


class ReplicaLost(TransportError):
    """The replica an episode is bound to (its session cookie names it) died or was restarted:
    the episode's state is gone with it. The rollout fails as ``replica_lost`` (retryable: the
    collector runs it again from the start, on a live replica; never scored)."""


class TransportTimeout(TransportError, httpx.TimeoutException):
    pass


class ConnectTimeout(TransportTimeout, httpx.ConnectTimeout):
    pass


class ReadTimeout(TransportTimeout, httpx.ReadTimeout):
    pass


class LocalModelError(NgymError):
    pass


class WeightsError(LocalModelError):
    """Model weights cannot be found, joined or verified."""


class LlamaServerError(LocalModelError, RuntimeError):
    """The ``llama-server`` binary is missing, or the server failed to start or died."""


class FailureKind(StrEnum):
    """Where a rollout failed: the ``kind`` of a :class:`RolloutError`, of an error answer
    (``{"error", "kind", "retryable"}``) and of each line of ``<out>_failures.jsonl``."""

    BAD_INPUT = "bad_input"  # the row is invalid (the agent answered 422)
    MODEL_ERROR = "model_error"  # the model server failed or could not be reached
    RESOURCES_ERROR = "resources_error"  # the resources server failed (seed, tool) or could not be reached
    VERIFIER_ERROR = "verifier_error"  # /verify failed
    TIMEOUT = "timeout"  # a call got no answer in time
    AGENT_UNREACHABLE = "agent_unreachable"  # the collector could not reach the agent
    AGENT_CRASH = "agent_crash"  # the agent answered an error without a kind (a bug in the agent)
    REPLICA_LOST = "replica_lost"  # the replica holding the episode died or restarted: retried from the start

    @classmethod
    def parse(cls, value: object) -> FailureKind | None:
        """The kind named by ``value`` (from an error answer), or None."""
        if not isinstance(value, str):
            return None
        try:
            return cls(value)
        except ValueError:
            return None

    @property
    def infrastructure(self) -> bool:
        """A failure of the deployment rather than of the row: many in a row stop a collection."""
        return self in _INFRASTRUCTURE


_INFRASTRUCTURE = frozenset(
    {FailureKind.MODEL_ERROR, FailureKind.RESOURCES_ERROR, FailureKind.AGENT_UNREACHABLE, FailureKind.TIMEOUT}
)


class Failure(NamedTuple):
    kind: FailureKind
    retryable: bool


def classify_failure(cause: BaseException | int, at: FailureKind) -> Failure:
    """The kind of a failed call and whether to retry it: the one place this is decided.

    ``cause`` is the exception the call raised or the HTTP status of its error answer; ``at`` is
    the kind of a failure at that boundary: ``MODEL_ERROR``, ``RESOURCES_ERROR``, ``VERIFIER_ERROR``
    for calls an agent makes, ``AGENT_CRASH`` for the collector's ``/run``.

    * the episode's replica is gone (:class:`ReplicaLost`): ``REPLICA_LOST``, retryable;
    * no answer in time: ``TIMEOUT``, retryable;
    * no answer at all (a transport error): ``at`` (``AGENT_UNREACHABLE`` for the agent), retryable;
    * another exception: ``at``, not retryable;
    * an error status from an agent: 422 is ``BAD_INPUT``; else ``AGENT_CRASH``, retryable only
      for 429, 502, 503, 504 (a 500 is a bug; repeating the row repeats it);
    * an error status from another server: ``at``, retryable for 429 and 5xx.
    """
    if isinstance(cause, int):
        if at is FailureKind.AGENT_CRASH:
            if cause == 422:
                return Failure(FailureKind.BAD_INPUT, False)
            return Failure(FailureKind.AGENT_CRASH, cause in (429, 502, 503, 504))
        return Failure(at, cause == 429 or cause >= 500)
    if isinstance(cause, ReplicaLost):
        return Failure(FailureKind.REPLICA_LOST, True)
    if isinstance(cause, httpx.TimeoutException | asyncio.TimeoutError | TimeoutError):
        return Failure(FailureKind.TIMEOUT, True)
    if isinstance(cause, httpx.HTTPError):  # ngym's transport errors are httpx's too
        return Failure(FailureKind.AGENT_UNREACHABLE if at is FailureKind.AGENT_CRASH else at, True)
    return Failure(at, False)


class RolloutError(NgymError):
    """One rollout failed; ``kind`` says at which boundary (a :class:`FailureKind`; its string
    value is accepted and checked)."""

    def __init__(
        self, message: str, *, kind: FailureKind | str, retryable: bool = False, status: int = 500
    ) -> None:
        super().__init__(message)
        try:
            self.kind = FailureKind(kind)
        except ValueError:
            raise ValueError(
                f"RolloutError kind {kind!r} is not a FailureKind; use one of {[k.value for k in FailureKind]}"
            ) from None
        self.retryable = retryable
        self.status = status


class VerifierError(RolloutError):
    """Raised by an environment's ``verify`` when it cannot score a rollout (a judge timed out, an
    answer cannot be checked): the rollout becomes a typed failure of kind ``verifier_error``
    (HTTP 500, written to ``<out>_failures.jsonl``), never a reward of 0."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, kind=FailureKind.VERIFIER_ERROR, retryable=retryable, status=500)


class ToolError(NgymError):
    """Raised by a tool to tell the model its call cannot be answered (a bad argument value, an
    illegal move): the tool answers HTTP 200 ``{"error": "<message>"}`` and the episode goes on."""
