"""Names derived from module and event: job ids, subscription names, log keys.

Derived names make work idempotent: the same (module, event, attempt) is always the same job,
so a redelivered message finds the job already running. Names are kept within the tightest
limit they must satisfy (Kubernetes object names, 63 characters; Service Bus subscription
names, 50) by a readable prefix plus a short hash.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^a-z0-9-]+")


def shorten(name: str, limit: int) -> str:
    """Return `name` if it fits, else a readable prefix and an 8-hex hash of the whole name."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: limit - 9].rstrip('-_.')}-{digest}"


def job_id(module: str, event_id: str, attempt: int) -> str:
    """Return the job name of one attempt: lowercase, '-'-separated, at most 63 characters."""
    raw = _UNSAFE.sub("-", f"{module}-{event_id}-a{attempt}".lower()).strip("-")
    if len(raw) <= 63:
        return raw
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    suffix = f"-{digest}-a{attempt}"
    return f"{raw[: 63 - len(suffix)].rstrip('-')}{suffix}"


def subscription_name(event_type: str, module: str) -> str:
    """Return the 2018 subscription name `<event>_<module>`, lowercased, at most 50 characters."""
    return shorten(f"{event_type}_{module}".lower(), 50)


def logs_key(correlation_id: str, event_id: str, module: str, attempt: int) -> str:
    """Return the blob key of one attempt's logs."""
    return f"logs/{correlation_id}/{event_id}/{module}-attempt-{attempt}.log"
