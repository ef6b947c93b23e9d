"""Ion's web console under `/ui` of the front API: modules, flows, one flow's tree, dead letters.

Server-rendered HTML (Jinja2 templates in `templates/`), a stylesheet and a small script for
live updates in `static/` (served from here: nothing from a CDN, no front-end build). It takes
the front API's credentials (a client certificate or the bearer token) and a session cookie set
by its login page (`ion.management.console._auth`). `app.run` mounts it when it starts the front
API; docs/console.md says how to open it.
"""

from __future__ import annotations

from ion.management.console._app import Console

__all__ = ["Console"]
