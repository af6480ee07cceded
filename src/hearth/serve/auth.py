"""Who is calling: Bearer API keys when keys are configured, loopback-only when none are.

Hand-written (a few lines): keys are compared in constant time against every configured key,
and a caller is named by its key's position, never by the key itself (it feeds rate limits,
fair queueing and logs).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from hearth.serve.config import API_KEYS_ENV, is_loopback
from hearth.serve.errors import APIError

# Paths anyone who can connect may read: liveness, the static web UI and the API description.
PUBLIC_PATHS = ("/health", "/openapi.json", "/docs", "/redoc")
PUBLIC_PREFIXES = ("/static/", "/docs/")


@dataclass(frozen=True)
class Caller:
    """The identity used for rate limits and fair queueing: "key-2" or "host-127.0.0.1"."""

    id: str
    with_key: bool


def is_public(path: str) -> bool:
    return path == "/" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(
    keys: tuple[str, ...], client_host: str | None, authorization: str | None, path: str
) -> Caller:
    """The caller of `path`, or an APIError (401 bad/missing key, 403 remote without keys).

    No keys configured: only loopback clients are served. Keys configured: /v1 routes need
    one of them as `Authorization: Bearer KEY`; /metrics takes a key or a loopback client.
    """
    host_caller = Caller(f"host-{client_host or 'local'}", with_key=False)
    local = client_host is None or is_loopback(client_host)  # None: a unix socket
    if not keys:
        if not local and path != "/health":
            raise APIError(
                403,
                "this server has no API keys, so it only serves clients on the same machine; "
                f"start it with --api-key KEY (or {API_KEYS_ENV}) to serve other machines",
                type="permission_error",
                code="loopback_only",
            )
        return host_caller
    if is_public(path):
        return host_caller
    token = bearer_token(authorization)
    if token is None and path == "/metrics" and local:
        return host_caller
    position = _key_position(keys, token)
    if position is None:
        reason = "no API key was given" if token is None else "the API key is not valid"
        raise APIError(
            401,
            f"{reason}: send one of the server's keys as the header "
            "'Authorization: Bearer KEY' (the server reads them from --api-key / "
            f"{API_KEYS_ENV})",
            type="authentication_error",
            code="invalid_api_key",
        )
    return Caller(f"key-{position + 1}", with_key=True)


def _key_position(keys: tuple[str, ...], token: str | None) -> int | None:
    if token is None:
        return None
    found = None
    given = token.encode()
    for i, key in enumerate(keys):  # no early exit: timing does not say which key matched
        if hmac.compare_digest(given, key.encode()) and found is None:
            found = i
    return found


class AccessMiddleware:
    """Authenticates every HTTP request and applies the per-caller rate limit to /v1 routes.

    The caller lands in `request.state.caller`; refusals are sent before any route runs.
    """

    def __init__(self, app, keys: tuple[str, ...], limiter=None) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        client = scope.get("client")
        authorization = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                authorization = value.decode("latin-1")
                break
        try:
            caller = authenticate(self.keys, client[0] if client else None, authorization, path)
            if self.limiter is not None and path.startswith("/v1/"):
                wait = self.limiter.check(caller.id)
                if wait > 0:
                    retry = self.limiter.retry_after(wait)
                    raise APIError(
                        429,
                        f"rate limit exceeded: this key may send {int(self.limiter.capacity)} "
                        f"requests per minute; retry in {retry} s",
                        type="rate_limit_error",
                        code="rate_limit_exceeded",
                        headers={"Retry-After": str(retry)},
                    )
        except APIError as exc:
            await exc.response()(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)
