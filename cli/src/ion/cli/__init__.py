"""Ion cli.

gRPC's C core logs to the process's stderr itself (a `Handshake failed` line before the CLI's
own one-line error), so its logging is off for the CLI unless the user asked for it. This runs
on the package's import, before anything of the CLI imports grpc (which reads these once).
"""

import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
os.environ.setdefault("GRPC_TRACE", "")
