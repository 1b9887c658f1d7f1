"""Live event streams: every SSE path of the server, and what keeps them cheap and exact.

- `hub.py`: one Redis pub/sub connection per process, relayed to small per-stream
  subscriptions (bounded queues; an overflow becomes a resync from Postgres).
- `follow.py`: subscribe, replay from Postgres, follow live: every event once, in order.
- `endpoints.py`: `GET /jobs/{id}/events` (SSE, or the history as JSON) and `GET /events`.
- `response.py`: an SSE response that runs in its request's task, for memory.
- `routes.py`: serves the stream paths in one frame, outside Starlette's stack.
- `dispatch.py`: the app uvicorn serves (or a host app mounts), sending stream paths to
  `routes.py`.
- `keepalive.py`: one keep-alive timer for every open stream of the process.
"""
