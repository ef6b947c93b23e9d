"""Which CAs the Azure backends trust: the system's, or a bundle named by `ION_AZURE_CA_FILE`."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

from azure.core.pipeline.transport import AioHttpTransport

from ion.core import errors


def trusted_ca_file(env: Mapping[str, str]) -> str:
    """`ION_AZURE_CA_FILE`: a PEM bundle of the CAs to trust instead of the system's (a private
    endpoint's CA, an emulator's); empty when unset.

    Raises:
        errors.ConfigError: it names a file that cannot be read.
    """
    path = env.get("ION_AZURE_CA_FILE", "").strip()
    if path and not os.access(path, os.R_OK):
        raise errors.ConfigError(f"ION_AZURE_CA_FILE={path!r} is not a readable file")
    return path


class _TrustingTransport(AioHttpTransport):  # type: ignore[misc]  # azure-core is untyped here
    """An aiohttp transport that verifies servers against one CA bundle."""

    def __init__(self, ca_file: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._context = ssl.create_default_context(cafile=ca_file)

    def _build_ssl_config(self, cert: Any, verify: Any) -> Any:
        if verify is True and not cert:
            return self._context
        return super()._build_ssl_config(cert, verify)


def trusting_transport(ca_file: str) -> AioHttpTransport:
    """A transport for SDK clients that take no CA path themselves (azure-cosmos)."""
    return _TrustingTransport(ca_file)
