"""`/metrics`: Prometheus exposition of this server process."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tidings.server.auth import OperatorOnly, acts_as_operator
from tidings.server.state import state_of


async def metrics(request: Request) -> Response:
    """GET /metrics: for the operator token (or with auth off), never for a tenant's key."""
    if not acts_as_operator(request):
        raise OperatorOnly(
            "/metrics describes every tenant: scrape it with TIDINGS_OPERATOR_TOKEN",
            {"field": "header.Authorization"},
        )
    state = state_of(request)
    state.metrics.sse_streams.set(state.hub.subscriptions)
    await state.metrics.refresh(state.pool, state.settings.heartbeat_s)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


routes = [Route("/metrics", metrics, methods=["GET"])]
