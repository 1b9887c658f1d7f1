"""Where the server is and which key to send: arguments, else TIDINGS_URL / TIDINGS_API_KEY."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_URL = "http://127.0.0.1:8000"
URL_VARIABLE = "TIDINGS_URL"
API_KEY_VARIABLE = "TIDINGS_API_KEY"
DEFAULT_TIMEOUT_S = 10.0
# The server sends a keep-alive every 15 s by default; four missed ones mean a dead link.
STREAM_READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ClientConfig:
    """The server's base URL and the API key, if any, resolved once."""

    url: str = DEFAULT_URL
    api_key: str | None = None

    @classmethod
    def resolve(
        cls,
        url: str | None = None,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ClientConfig:
        """Explicit values win; otherwise the environment; otherwise the local default."""
        env = os.environ if environ is None else environ
        resolved_url = url or env.get(URL_VARIABLE) or DEFAULT_URL
        resolved_key = api_key if api_key is not None else env.get(API_KEY_VARIABLE)
        return cls(url=resolved_url.rstrip("/"), api_key=resolved_key or None)

    def headers(self, user_agent: str) -> dict[str, str]:
        """Headers every request carries."""
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers
