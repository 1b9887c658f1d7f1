"""The tidings HTTP server: a Starlette app with REST routes, SSE streams and one hub.

Served by itself with `tidings server`, or mounted in a FastAPI or Starlette app whose
lifespan runs tidings' own (a mounted app's lifespan never runs by itself):

    tidings_app = create_app()  # Settings.from_env(); or create_app(Settings(...))
    app = FastAPI(lifespan=tidings_app.lifespan)
    app.mount("/tidings", tidings_app)

A host with a lifespan of its own enters tidings' inside it:
`async with tidings_app.lifespan(app): yield`.
"""

from tidings.core.settings import Settings
from tidings.server.app import create_app
from tidings.server.streams.dispatch import Dispatcher

__all__ = ["Dispatcher", "Settings", "create_app"]
