"""The HTTP boundary both clients share: httpx outcomes as the client's own errors.

`AsyncClient` and `Client` differ only in how they wait for I/O; what to send is in
`client.calls`, and what an answer (or a failure to get one) means lives here, once.
"""

from __future__ import annotations

from typing import Any

import httpx

from tidings.client import errors

USER_AGENT = "tidings-client/0.1"


def raise_for_status(response: httpx.Response) -> None:
    """Raise the matching `TidingsError` for an error response (whose body has been read)."""
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    raise errors.error_for_status(
        response.status_code,
        body,
        retry_after=response.headers.get("retry-after"),
        fallback_text=response.text if body is None else "",
    )


def decode(response: httpx.Response) -> Any:
    """The JSON body of a successful response, or the error it stands for."""
    raise_for_status(response)
    try:
        return response.json()
    except ValueError:
        raise errors.TidingsError(
            f"the server at {response.request.url} did not answer with JSON",
            status=response.status_code,
            code="not_json",
        ) from None


def unreachable(exc: httpx.TransportError, base_url: str) -> errors.ConnectionError:
    """A transport failure as the client's `ConnectionError`, with a message a person can act on."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectTimeout):
        message = f"timed out connecting to the tidings server at {base_url}"
    elif isinstance(exc, httpx.ConnectError):
        message = f"cannot reach the tidings server at {base_url} ({_reason(detail)})"
    elif isinstance(exc, httpx.TimeoutException):
        message = f"the tidings server at {base_url} did not answer in time"
    elif isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        message = f"the connection to the tidings server at {base_url} broke ({detail})"
    else:
        message = f"cannot talk to the tidings server at {base_url} ({detail})"
    return errors.ConnectionError(message, code="unreachable")


def _reason(detail: str) -> str:
    # "[Errno 111] Connection refused" reads better without the errno.
    if detail.startswith("[Errno") and "] " in detail:
        return detail.split("] ", 1)[1].lower()
    return detail


def check_event_stream(response: httpx.Response) -> None:
    """Raise for an error answer (its body read), and refuse a 200 that is not SSE (a
    captive portal, a misrouted proxy): retrying won't help."""
    raise_for_status(response)
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise errors.TidingsError(
            f"{response.request.url} answered {content_type or 'no content type'}, "
            "not an event stream",
            status=response.status_code,
            code="not_an_event_stream",
        )
