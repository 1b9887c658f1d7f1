"""Stream tokens: a signed, expiring grant of one job's stream (or `*`, the tenant's feed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from tidings.server.tokens import StreamTokens

SECRET = b"k" * 32
JOB = "6f1c2f0e-8d3b-4c55-9a41-0b8f0f1f2e3d"
OTHER_JOB = "0d9e8f7a-1b2c-4d3e-8f4a-5b6c7d8e9f00"
NOW = 1_800_000_000.0


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def tokens(clock: FakeClock | None = None, secret: bytes = SECRET) -> StreamTokens:
    return StreamTokens(secret, ttl_s=60, clock=clock or FakeClock())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def claims_of(token: str) -> dict[str, object]:
    claims: dict[str, object] = json.loads(unb64(token.split(".")[0]))
    return claims


def test_a_token_grants_its_job_to_its_tenant() -> None:
    signer = tokens()
    assert signer.tenant_for(signer.issue(JOB, "acme"), JOB) == "acme"


def test_a_token_is_url_safe_and_carries_no_secret() -> None:
    token = tokens().issue(JOB, "acme")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    assert SECRET.decode() not in token
    assert claims_of(token) == {"j": JOB, "t": "acme", "e": int(NOW + 60)}


def test_a_token_does_not_open_another_job() -> None:
    signer = tokens()
    assert signer.tenant_for(signer.issue(JOB, "acme"), OTHER_JOB) is None


def test_the_tenant_feed_token_and_a_job_token_do_not_stand_in_for_each_other() -> None:
    signer = tokens()
    assert signer.tenant_for(signer.issue("*", "acme"), "*") == "acme"
    assert signer.tenant_for(signer.issue("*", "acme"), JOB) is None
    assert signer.tenant_for(signer.issue(JOB, "acme"), "*") is None


def test_a_token_expires_after_its_ttl() -> None:
    clock = FakeClock()
    signer = tokens(clock)
    token = signer.issue(JOB, "acme")
    clock.now = NOW + 60  # the expiry second itself still counts
    assert signer.tenant_for(token, JOB) == "acme"
    clock.now = NOW + 61
    assert signer.tenant_for(token, JOB) is None


def test_a_token_from_another_secret_is_refused() -> None:
    token = tokens(secret=b"another secret").issue(JOB, "acme")
    assert tokens().tenant_for(token, JOB) is None


def test_servers_sharing_a_secret_accept_each_others_tokens() -> None:
    token = tokens().issue(JOB, "acme")
    assert StreamTokens(SECRET, ttl_s=1, clock=FakeClock()).tenant_for(token, JOB) == "acme"


def flip(text: str, index: int) -> str:
    """`text` with the character at `index` replaced by a different base64url character.

    Not the last character: its low bits are padding that decoding ignores.
    """
    replacement = "B" if text[index] == "A" else "A"
    return text[:index] + replacement + text[index + 1 :]


@pytest.mark.parametrize("part", [0, 1], ids=["payload", "signature"])
@pytest.mark.parametrize("index", [0, 5, -2])
def test_a_flipped_character_anywhere_voids_the_token(part: int, index: int) -> None:
    signer = tokens()
    pieces = signer.issue(JOB, "acme").split(".")
    pieces[part] = flip(pieces[part], index % len(pieces[part]))
    assert signer.tenant_for(".".join(pieces), JOB) is None


@pytest.mark.parametrize(
    "change",
    [
        {"t": "intruder"},
        {"j": OTHER_JOB},
        {"e": int(NOW) + 10**9},
    ],
    ids=["tenant", "job", "expiry"],
)
def test_rewritten_claims_with_the_old_signature_are_refused(change: dict[str, object]) -> None:
    signer = tokens()
    payload, signature = signer.issue(JOB, "acme").split(".")
    forged = b64(json.dumps({**claims_of(f"{payload}.x"), **change}).encode())
    job = str(change.get("j", JOB))
    assert signer.tenant_for(f"{forged}.{signature}", job) is None


def signed(payload: bytes) -> str:
    """A correctly signed token around an arbitrary payload."""
    return f"{b64(payload)}.{b64(hmac.new(SECRET, payload, hashlib.sha256).digest())}"


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'"a string"',
        b'{"j": "' + JOB.encode() + b'", "t": "acme"}',  # no expiry
        b'{"j": "' + JOB.encode() + b'", "t": "acme", "e": "never"}',
        b'{"j": "' + JOB.encode() + b'", "t": "acme", "e": 1e30}',
        b'{"j": "' + JOB.encode() + b'", "e": 1900000000}',  # no tenant
        b'{"j": "' + JOB.encode() + b'", "t": 7, "e": 1900000000}',
    ],
    ids=[
        "not-json",
        "array",
        "string",
        "no-expiry",
        "text-expiry",
        "float-expiry",
        "no-tenant",
        "number-tenant",
    ],
)
def test_a_signed_but_malformed_payload_grants_nothing(payload: bytes) -> None:
    assert tokens().tenant_for(signed(payload), JOB) is None


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        ".",
        "..",
        "abc",
        "abc.def",
        "a.b.c",
        "!!!.???",
        "é.ü",
        "\x00.\x00",
        "=" * 10,
        "x" * 10_000,
    ],
)
def test_garbage_is_refused_without_raising(garbage: str) -> None:
    assert tokens().tenant_for(garbage, JOB) is None
