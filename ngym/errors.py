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
    ├── DeploymentError            servers could not be started, or one died
    ├── RolloutError               one rollout failed (typed; a bad rollout is data, not a crash)
    │   └── VerifierError          an environment's verify could not score a rollout (``verifier_error``)
    └── ToolError                  a tool call the model made cannot be answered; the model sees the message

Messages name what is wrong (key, value, file) and how to fix it.
"""

from __future__ import annotations


class NgymError(Exception):
    """Base of all ngym errors: ``str(err)`` is a complete, human-readable message."""


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


class DeploymentError(NgymError):
    pass


class RolloutError(NgymError):
    """One rollout failed; ``kind`` says at which boundary (see ``ngym.rollout.collect.FailureKind``)."""

    def __init__(self, message: str, *, kind: str, retryable: bool = False, status: int = 500) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.status = status


class VerifierError(RolloutError):
    """Raised by an environment's ``verify`` when it cannot score a rollout (a judge timed out, an
    answer cannot be checked): the rollout becomes a typed failure of kind ``verifier_error``
    (HTTP 500, written to ``<out>_failures.jsonl``), never a reward of 0."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message, kind="verifier_error", retryable=retryable, status=500)


class ToolError(NgymError):
    """Raised by a tool to tell the model its call cannot be answered (a bad argument value, an
    illegal move): the tool answers HTTP 200 ``{"error": "<message>"}`` and the episode goes on."""
