"""Container health check of Ion's services: exit 0 if the service answers its /healthz.

    python /opt/ion/bin/ion-healthcheck dispatcher   # http://127.0.0.1:$ION_DISPATCHER__HEALTH_PORT/healthz
    python /opt/ion/bin/ion-healthcheck management   # the front API's /healthz ($ION_MANAGEMENT__FRONT_API_PORT)

The management front API speaks HTTPS when the server has certificates (a client certificate
is optional there and /healthz needs none), plain HTTP with --insecure: both are tried. Only the
standard library, so a check costs one interpreter start.
"""

from __future__ import annotations

import os
import ssl
import sys
import urllib.request

PORTS = {
    "dispatcher": ("ION_DISPATCHER__HEALTH_PORT", "8080"),
    "management": ("ION_MANAGEMENT__FRONT_API_PORT", "9001"),
}


def main(argv: list[str]) -> int:
    service = argv[1] if len(argv) > 1 else ""
    if service not in PORTS:
        print(f"usage: ion-healthcheck {'|'.join(PORTS)}", file=sys.stderr)
        return 2
    variable, default = PORTS[service]
    port = os.environ.get(variable) or default
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE  # loopback to our own process: only liveness counts
    errors = []
    for scheme in ("http", "https"):
        try:
            with urllib.request.urlopen(
                f"{scheme}://127.0.0.1:{port}/healthz", timeout=4, context=unverified
            ) as response:
                if response.status == 200:
                    return 0
                errors.append(f"{scheme}: HTTP {response.status}")
        except (OSError, ValueError) as err:
            errors.append(f"{scheme}: {err}")
    print(f"{service} is unhealthy on port {port}: {'; '.join(errors)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
