"""A small JSON client of the Kubernetes API: requests, pod logs and watch streams as dicts.

Credentials and TLS come from the `kubernetes` package's own loaders (kubeconfig with its
exec plugins and contexts, or the in-cluster service account with its rotating token). The
requests themselves go through one aiohttp session as plain JSON: the package's generated
asyncio models validate every object with pydantic, which costs more than the request itself
when an executor creates a hundred Jobs a second, and a watch must be read line by line with
its resource version in hand.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp

from ion.core import errors

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeApiError(errors.IonError):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        """Worth retrying: the server is busy, restarting or timed out."""
        return self.status in (429, 500, 502, 503, 504) or self.reason in (
            "ServerTimeout",
            "Timeout",
            "TooManyRequests",
        )


def in_cluster() -> bool:
    """True inside a pod that has a service account token."""
    return (SERVICE_ACCOUNT_DIR / "token").is_file() and bool(
        os.environ.get("KUBERNETES_SERVICE_HOST")
    )


def default_namespace(configured: str) -> str:
    """Return `configured`, else the pod's own namespace in a cluster, else `default`."""
    if configured:
        return configured
    try:
        return (SERVICE_ACCOUNT_DIR / "namespace").read_text().strip() or "default"
    except OSError:
        return "default"


class KubeApi:
    """JSON over HTTPS to one API server, with the credentials of a loaded configuration."""

    def __init__(self, configuration: Any, *, concurrency: int = 32) -> None:
        self._config = configuration
        self._host = str(configuration.host).rstrip("/")
        self._limit = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    async def connect(
        cls, *, kubeconfig: str = "", context: str = "", concurrency: int = 32
    ) -> KubeApi:
        """Load credentials: the kubeconfig if named, else in-cluster, else KUBECONFIG/~/.kube.

        Raises:
            errors.ConfigError: no usable configuration was found (what was tried is named).
        """
        from kubernetes.aio import client, config

        configuration = client.Configuration()
        try:
            if kubeconfig or not in_cluster():
                await config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig or None,
                    context=context or None,
                    client_configuration=configuration,
                )
            else:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError, TypeError) as err:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            raise errors.ConfigError(
                f"cannot reach Kubernetes: no in-cluster service account and no usable "
                f"kubeconfig at {where} ({err}); set ION_KUBERNETES__KUBECONFIG or KUBECONFIG"
            ) from err
        return cls(configuration, concurrency=concurrency)

    def _ssl(self) -> ssl.SSLContext | bool:
        cfg = self._config
        if not cfg.verify_ssl:
            return False
        context = ssl.create_default_context(cafile=cfg.ssl_ca_cert or None)
        if cfg.cert_file:
            context.load_cert_chain(cfg.cert_file, cfg.key_file)
        return context

    async def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl(),
                limit=self._concurrency + 8,
                keepalive_timeout=120,  # bursts after a quiet spell reuse their TLS connections
            )
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        auth = await self._config.auth_settings()
        if token := auth.get("BearerToken"):
            headers["Authorization"] = token["value"]
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """Send one request and return the JSON reply.

        Raises:
            KubeApiError: the server answered with an error status.
            errors.TransientError: the server could not be reached.
        """
        session = await self._open()
        data = None if body is None else json.dumps(body)
        async with self._limit:
            try:
                async with session.request(
                    method,
                    self._host + path,
                    params=params,
                    data=data,
                    headers=await self._headers(content_type if data is not None else None),
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as response:
                    raw = await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError) as err:
                raise errors.TransientError(
                    f"the Kubernetes API server did not answer {method} {path}: {err}"
                ) from err
        return _reply(status, raw)

    async def text(self, path: str, *, params: Mapping[str, str] | None = None) -> str:
        """GET a plain-text resource (a container's log).

        Raises:
            KubeApiError: the server answered with an error status.
            errors.TransientError: the server could not be reached.
        """
        session = await self._open()
        async with self._limit:
            try:
                async with session.get(
                    self._host + path,
                    params=params,
                    headers=await self._headers(None),
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as response:
                    raw = await response.read()
                    if response.status >= 400:
                        _reply(response.status, raw)
            except (aiohttp.ClientError, TimeoutError) as err:
                raise errors.TransientError(f"cannot read {path}: {err}") from err
        return raw.decode("utf-8", errors="replace")

    async def watch(self, path: str, *, params: Mapping[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Yield the watch events of `path` (`{"type", "object"}`) until the server ends it.

        Raises:
            KubeApiError: the watch could not start (410 Gone: the version is too old).
            errors.TransientError: the server could not be reached or the stream broke.
        """
        session = await self._open()
        query = {**params, "watch": "true", "allowWatchBookmarks": "true"}
        try:
            async with session.get(
                self._host + path,
                params=query,
                headers=await self._headers(None),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            ) as response:
                if response.status >= 400:
                    _reply(response.status, await response.read())
                while line := await response.content.readline():
                    if line.strip():
                        yield json.loads(line)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            raise errors.TransientError(f"the watch of {path} broke: {err}") from err

    async def aclose(self) -> None:
        """Close the connections."""
        if self._session is not None:
            await self._session.close()


def _reply(status: int, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        data = {"message": raw[:500].decode("utf-8", errors="replace")}
    if status >= 400:
        reason = data.get("reason", "") if isinstance(data, dict) else ""
        message = data.get("message", "") if isinstance(data, dict) else ""
        raise KubeApiError(status, reason or _STATUS_NAMES.get(status, "Error"), message)
    return data if isinstance(data, dict) else {}


_STATUS_NAMES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "AlreadyExists",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
}
