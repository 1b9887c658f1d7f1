"""Short-lived stream tokens: let a browser open one job's SSE stream without an API key.

A token is `<payload>.<signature>`, both base64url: the payload is JSON naming the job,
the tenant and the expiry; the signature is HMAC-SHA256 of the payload with the server
secret. Every server sharing `TIDINGS_SECRET` accepts the others' tokens.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class TokenGrant:
    """A valid token's claims: the tenant, the key that minted it, when it expires."""

    tenant: str
    key_id: str | None
    expires_at: float


@dataclass(frozen=True)
class StreamTokens:
    """Signs and checks stream tokens with one secret."""

    secret: bytes
    ttl_s: float = 900.0
    clock: Callable[[], float] = time.time

    def issue(self, job_id: str, tenant: str, key_id: str | None = None) -> str:
        """A token for `job_id` of `tenant`, valid for `ttl_s` seconds; `key_id` names the
        API key it was minted with, whose revocation ends it too."""
        claims: dict[str, object] = {"j": job_id, "t": tenant, "e": int(self.clock() + self.ttl_s)}
        if key_id is not None:
            claims["k"] = key_id
        payload = orjson.dumps(claims)
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def tenant_for(self, token: str, job_id: str) -> str | None:
        """The tenant a valid, unexpired token grants `job_id` to; None otherwise."""
        grant = self.grant(token, job_id)
        return None if grant is None else grant.tenant

    def grant(self, token: str, job_id: str) -> TokenGrant | None:
        """What a valid, unexpired token grants for `job_id`; None otherwise."""
        try:
            encoded, signature = token.split(".", 1)
            payload = _unb64(encoded)
            if not hmac.compare_digest(_unb64(signature), self._sign(payload)):
                return None
            claims = orjson.loads(payload)
        except (ValueError, TypeError):
            return None
        if not isinstance(claims, dict) or claims.get("j") != job_id:
            return None
        if not isinstance(claims.get("e"), int) or claims["e"] < self.clock():
            return None
        tenant, key_id = claims.get("t"), claims.get("k")
        if not isinstance(tenant, str) or not isinstance(key_id, str | None):
            return None
        return TokenGrant(tenant, key_id, float(claims["e"]))

    def _sign(self, payload: bytes) -> bytes:
        return hmac.digest(self.secret, payload, hashlib.sha256)
