"""Which CAs the Azure backends trust: the system's, or a bundle named by `ION_AZURE_CA_FILE`."""

from __future__ import annotations

import os
from collections.abc import Mapping

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
