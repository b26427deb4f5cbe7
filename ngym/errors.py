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
    └── RolloutError               one rollout failed (typed; a bad rollout is data, not a crash)

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


class OutputError(NgymError):
    """An output file is in use by another run, would be overwritten, is the input, or cannot be written."""


class DeploymentError(NgymError):
    pass


class RolloutError(NgymError):
    """One rollout failed; ``kind`` says at which boundary (see ``ngym.rollout.collect.FailureKind``)."""

    def __init__(self, message: str, *, kind: str, retryable: bool = False, status: int = 500) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable
        self.status = status
