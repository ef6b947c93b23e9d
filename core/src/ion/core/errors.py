"""Ion's one error hierarchy, so callers decide what to do by type, never by message text.

```
IonError                          root, never raised itself
├── ConfigError                   a setting/URL is wrong: names the variable, shows a valid example
├── ValidationError               a spec, event or request is wrong: .field, .rule
│   ├── PoisonMessageError        an unparseable bus message: dead-letter at once with .reason
│   └── PathEscapeError           a module named a path outside its directory
├── NotFoundError                 what get_ raises: .key of the missing thing where known
├── ConflictError                 what create_ raises when the thing exists (or an etag is stale)
├── PreconditionError             valid, but not now (a module with queued events to delete)
├── ModuleFailedError             the module exited non-zero: .exit_code, .logs_ref
└── TransientError                worth retrying: .retry_after (throttling, timeouts, lost lock)
    └── LockLostError             the message lock expired or was taken by another receiver
```
"""

from __future__ import annotations

from datetime import timedelta


class IonError(Exception):
    """Root of every error Ion raises on purpose."""


class ConfigError(IonError):
    """A setting or backend URL is wrong; the message names it and shows a valid example."""


class ValidationError(IonError):
    """Input broke a rule; `field` names what was wrong and `rule` the rule it broke."""

    def __init__(self, message: str, *, field: str = "", rule: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule


class PoisonMessageError(ValidationError):
    """A bus message that can never be processed; it is dead-lettered at once with `reason`."""

    def __init__(self, message: str, *, reason: str, field: str = "") -> None:
        super().__init__(message, field=field, rule=reason)
        self.reason = reason


class PathEscapeError(ValidationError):
    """A module named a path that leaves its directory (``..``, absolute, or a symlink out)."""


class NotFoundError(IonError):
    """The thing asked for does not exist; `key` names it where the raiser knows it.

    A batch (`BlobStore.get_files`) sets `key` to the blob that was missing.
    """

    def __init__(self, message: str, *, key: str = "") -> None:
        super().__init__(message)
        self.key = key


class ConflictError(IonError):
    """The thing to create exists already, or an optimistic-concurrency check failed."""


class PreconditionError(IonError):
    """The request is valid but the system is not in a state to carry it out now (a module
    with queued events asked to be deleted without force); the message says what to do."""


class ModuleFailedError(IonError):
    """The module exited non-zero (or was killed at its deadline)."""

    def __init__(self, message: str, *, exit_code: int | None, logs_ref: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.logs_ref = logs_ref


class TransientError(IonError):
    """A failure worth retrying after `retry_after` (throttling, timeouts, lost connections)."""

    def __init__(self, message: str, *, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class LockLostError(TransientError):
    """The message's lock expired or is held by someone else; settle nothing, expect redelivery."""
