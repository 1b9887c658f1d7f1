"""JSON responses encoded by orjson, which is several times faster than `json` on job bodies."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse


class JSONResponse(StarletteJSONResponse):
    """Starlette's JSON response with an orjson body (compact, UTF-8, as Starlette's).

    Non-string keys are written as strings, as `json` does; NaN and infinities, which
    `json` refuses here, become null.
    """

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
