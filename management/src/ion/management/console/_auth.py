"""Who may use the console: the front API's credentials, a session cookie, and CSRF tokens.

A request is let in by a client certificate signed by Ion's CA, `Authorization: Bearer
<token>` (both as the front API, `ion.management.front_api.credential`), or the session cookie
the login page sets after it was given the token. The cookie holds no token: it is
`v1.<issued>.<HMAC-SHA256 of the issue time, keyed by the token>`, so it opens the console only
(not the front API's event routes), expires after `SESSION_SECONDS`, and every session ends when
the token changes. It is HttpOnly, Secure and SameSite=Strict.

Every POST but the login's carries a CSRF token: an HMAC, keyed by a secret of this process,
of how the request authenticated (the session cookie, or the client certificate's fingerprint,
which a browser would send cross-site). POSTs whose `Origin` or `Sec-Fetch-Site` say they come
from another site are refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import urlsplit

from aiohttp import web

from ion.management.front_api import credential

COOKIE = "ion_console"
SESSION_SECONDS = 12 * 3600
"""How long a login lasts."""
CSRF_FIELD = "csrf_token"


class Gate:
    """Checks requests against the front API token, sessions and CSRF tokens."""

    def __init__(self, token: str | None) -> None:
        self.token = token or None
        self._csrf_key = secrets.token_bytes(32)

    def _sign(self, issued: int) -> str:
        assert self.token is not None
        digest = hmac.new(
            self.token.encode(), f"ion-console-session:v1:{issued}".encode(), hashlib.sha256
        ).hexdigest()
        return f"v1.{issued}.{digest}"

    def new_session(self, *, now: float | None = None) -> str:
        """Return a fresh session cookie value (only once the token was checked)."""
        return self._sign(int(time.time() if now is None else now))

    def session_valid(self, value: str, *, now: float | None = None) -> bool:
        """True if `value` is a session this token issued less than `SESSION_SECONDS` ago."""
        if self.token is None:
            return False
        version, _, rest = value.partition(".")
        issued_text, _, _ = rest.partition(".")
        if version != "v1" or not issued_text.isdigit():
            return False
        issued = int(issued_text)
        current = time.time() if now is None else now
        if not (current - SESSION_SECONDS < issued <= current + 60):
            return False
        return hmac.compare_digest(value.encode(), self._sign(issued).encode())

    def token_matches(self, presented: str) -> bool:
        """True if `presented` is the front API token."""
        return self.token is not None and hmac.compare_digest(
            presented.strip().encode(), self.token.encode()
        )

    def identity(self, request: web.Request) -> str | None:
        """How the request authenticates (`cert:...`, `bearer`, `session:...`), or None."""
        found = credential(request, self.token)
        if found is not None:
            return found
        cookie = request.cookies.get(COOKIE, "")
        if cookie and self.session_valid(cookie):
            return "session:" + cookie
        return None

    def csrf_token(self, identity: str) -> str:
        """The CSRF token forms of this identity must send back."""
        return hmac.new(self._csrf_key, identity.encode(), hashlib.sha256).hexdigest()

    def csrf_valid(self, identity: str, presented: str) -> bool:
        """True if `presented` is this identity's CSRF token."""
        return hmac.compare_digest(presented.encode(), self.csrf_token(identity).encode())


def cross_site(request: web.Request) -> bool:
    """True if the browser says the request comes from another site (Origin, Sec-Fetch-Site)."""
    fetch_site = request.headers.get("Sec-Fetch-Site", "")
    if fetch_site and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin", "")
    if origin == "null":
        return True
    if origin:
        # Host and port only: behind an ingress that ends TLS the scheme seen here is http.
        return urlsplit(origin).netloc.lower() != request.host.lower()
    return False


def set_session(response: web.StreamResponse, value: str) -> None:
    """Set the session cookie: HttpOnly, Secure, SameSite=Strict, scoped to /ui."""
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_SECONDS,
        path="/ui",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def clear_session(response: web.StreamResponse) -> None:
    """Remove the session cookie."""
    response.del_cookie(COOKIE, path="/ui", secure=True, httponly=True, samesite="Strict")
