"""Who is asking: an API key (or a stream token) names the tenant every query is scoped to.

With `TIDINGS_AUTH=keys` every route but the public ones needs `Authorization: Bearer
<key>`; a job's event stream also accepts `?token=` from that job's `links.events`. With
`TIDINGS_AUTH=off` (loopback only) every request acts as the `default` tenant. The
resolved tenant is kept in the request scope; routes read it with `tenant_of`.
"""

from __future__ import annotations

import hmac
import re

import structlog
from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from tidings.core import keys
from tidings.core.db import keys as key_rows
from tidings.core.db.pool import CONNECTION_ERRORS
from tidings.core.errors import Forbidden, TidingsError
from tidings.server.errors import tidings_error_response
from tidings.server.limits import TooManyRequests
from tidings.server.mount import route_path
from tidings.server.state import ServerState, started_state
from tidings.server.streams.authority import NO_AUTHORITY, Authority
from tidings.server.streams.hub import batch_key

log = structlog.get_logger("tidings.auth")

DEFAULT_TENANT = "default"
BACKEND_ERRORS: tuple[type[BaseException], ...] = (RedisError, *CONNECTION_ERRORS)
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs", "/", "/favicon.ico"})
# Operator surfaces: they describe the whole cluster, not one tenant's jobs.
OPERATOR_PATHS = frozenset({"/metrics", "/workers"})
PUBLIC_PREFIXES = ("/static/", "/ui/", "/docs/assets/")
STREAM_PATH = re.compile(r"^/jobs/([^/]+)/events$")
BATCH_STREAM_PATH = re.compile(r"^/batches/([^/]+)/events$")
ALL_EVENTS_PATH = "/events"
ALL_JOBS = "*"  # the subject of a token for the tenant's `/events` stream


class Unauthorized(TidingsError):
    status, code = 401, "unauthorized"


def holds_operator_token(state: ServerState, scope: Scope) -> bool:
    """Whether the request's bearer credential is the configured operator token."""
    token, secret = state.settings.operator_token, _bearer(scope)
    if not token or secret is None:
        return False
    # Bytes, not str: compare_digest refuses non-ASCII text, and a header may hold any.
    return hmac.compare_digest(secret.encode("latin-1"), token.encode())


def acts_as_operator(request: Request) -> bool:
    """The caller may see the whole cluster: auth is off, or it holds the operator token."""
    return (
        request.scope["state"]["tenant"] is None or request.app.state.tidings.settings.auth == "off"
    )


class OperatorOnly(TidingsError):
    status, code = 403, "operator_only"


def authority_of(scope: Scope) -> Authority:
    """The credential a request was admitted with (none with auth off, or on public paths)."""
    authority: Authority = scope.get("state", {}).get("authority", NO_AUTHORITY)
    return authority


def tenant_of(request: Request) -> str:
    """The tenant the request acts for (set by `Authenticate`)."""
    tenant: str = request.scope["state"]["tenant"]
    return tenant


def stream_subject(path: str) -> str | None:
    """What a stream token must name to open `path`: a job id, `*` for `/events`,
    `batch:{id}` for a batch's stream, or None."""
    if path == ALL_EVENTS_PATH:
        return ALL_JOBS
    match = STREAM_PATH.match(path)
    if match:
        return match.group(1)
    match = BATCH_STREAM_PATH.match(path)
    return batch_key(match.group(1)) if match else None


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            header: str = value.decode("latin-1")
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
    return None


class CredentialsUnavailable(TidingsError):
    status, code = 503, "unavailable"
    retry_after_s = 2


async def authenticate(state: ServerState, scope: Scope) -> str | None:
    """The tenant an HTTP request acts for (None on public paths); the credential behind it
    goes into the scope's state as `authority` (see `authority_of`).

    Raises 401 without valid credentials, 429 past the key's rate, 503 when the
    credentials cannot be checked now. Paths are the ones below the app's mount point.
    """
    path = route_path(scope)
    if state.settings.auth == "off":
        local_only(scope)
        return DEFAULT_TENANT
    if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
        return None
    if path in OPERATOR_PATHS and holds_operator_token(state, scope):
        return None
    try:
        return await _tenant(state, scope, path)
    except BACKEND_ERRORS as exc:
        log.warning("auth.backend_unavailable", error=repr(exc))
        raise CredentialsUnavailable("cannot check credentials now; try again shortly") from exc


# Host names of this machine, for the auth-off server (which binds to loopback only).
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def local_only(scope: Scope) -> None:
    """With auth off, refuse what only another site could send (403).

    A `Host` that is not this machine's is a DNS-rebinding attempt: a page of another
    site that resolves its own name to 127.0.0.1. An `Origin` other than the server's own
    on a state-changing request is a page of another site submitting or cancelling jobs.
    """
    headers = Headers(scope=scope)
    host = headers.get("host")
    if host is not None and _host_name(host) not in LOOPBACK_NAMES:
        raise Forbidden(
            "with TIDINGS_AUTH=off only this machine's own names are served",
            {"field": "header.Host"},
        )
    origin = headers.get("origin")
    own = () if host is None else (f"http://{host}".lower(), f"https://{host}".lower())
    if scope["method"] not in SAFE_METHODS and origin is not None and origin.lower() not in own:
        raise Forbidden(
            "with TIDINGS_AUTH=off, requests from another site's pages are refused",
            {"field": "header.Origin"},
        )


def _host_name(host: str) -> str:
    """The name in a Host header, without its port (an IPv6 address without brackets)."""
    if host.startswith("["):
        return host[1 : host.find("]")].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


class Authenticate:
    """Resolves the tenant of each HTTP request into its scope, or answers the error."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            tenant = await authenticate(started_state(scope["app"].state), scope)
        except TidingsError as exc:
            await tidings_error_response(exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["tenant"] = tenant
        await self.app(scope, receive, send)


async def _tenant(state: ServerState, scope: Scope, path: str) -> str:
    """The caller's tenant; raises 401 without valid credentials, 429 past the rate.

    A request whose credentials fail takes a token from its client address's bucket: past
    the rate, guessing keys or tokens from one address gets 429 instead of an answer.
    """
    client = scope.get("client")
    address = client[0] if client else "unknown"
    state.lockouts.check(address)
    try:
        return await _credentials(state, scope, path)
    except Unauthorized:
        if state.rate_limiter.enabled:
            try:
                await state.rate_limiter.check(f"address:{address}")
            except TooManyRequests as exc:
                state.lockouts.lock(address, exc.retry_after_s)
                raise
            except BACKEND_ERRORS:
                pass  # no bucket to charge: the credential is still wrong (401, not 503)
        raise


async def _credentials(state: ServerState, scope: Scope, path: str) -> str:
    secret = _bearer(scope)
    if secret is not None:
        grant = await state.key_lookup.grant_of(secret)
        if grant is None:
            raise Unauthorized("the API key is unknown or revoked")
        if state.rate_limiter.enabled:
            await state.rate_limiter.check(keys.digest(secret).hex()[:32])
        tenant, key_id = grant
        scope.setdefault("state", {})["authority"] = Authority(key_id)
        return tenant
    subject = stream_subject(path)
    token = Request(scope).query_params.get("token") if subject else None
    if subject is not None and token:
        granted = state.tokens.grant(token, subject)
        if granted is None:
            raise Unauthorized("the stream token is invalid, expired, or for another job")
        if granted.key_id is not None and await key_rows.revoked_among(
            state.pool, key_ids=[granted.key_id]
        ):
            raise Unauthorized("the stream token's API key has been revoked")
        scope.setdefault("state", {})["authority"] = Authority(granted.key_id, granted.expires_at)
        return granted.tenant
    raise Unauthorized("a valid API key (Authorization: Bearer …) is required")
