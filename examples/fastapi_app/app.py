"""The example application: users, uploads, and tidings mounted at `/tidings`.

1. `POST /users` creates a user and enqueues its welcome email in the same transaction.
   With `"fail_after_enqueue": true` the transaction rolls back after the enqueue: no
   user, no job, no email.
2. `POST /uploads` takes a file and starts `count_words` on it; `/uploads/{job_id}` is a
   page whose progress bar follows the job over SSE.
3. `/tidings/` is the tidings dashboard; `/tidings/jobs/...` its API.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations, which
# name dependencies local to `build_app`.
import asyncio
import html
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import ForeignKey, String, Uuid
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tidings import Tidings
from tidings.core.errors import TidingsError
from tidings.core.settings import Settings
from tidings.server import create_app

PREFIX = "/tidings"
PAGE = Path(__file__).with_name("progress.html")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)


class WelcomeEmail(Base):
    __tablename__ = "welcome_emails"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(Uuid)


class NewUser(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320)
    fail_after_enqueue: bool = False


class Rollback(Exception):
    """Raised inside the transaction to show that the job rolls back with the user."""


def sqlalchemy_url(database_url: str) -> str:
    """The asyncpg URL of the same database, for SQLAlchemy."""
    return database_url.replace("postgresql://", "postgresql+asyncpg://", 1)


def build_app(settings: Settings, uploads: Path) -> FastAPI:
    """The application for `settings` (URLs resolved), keeping uploads under `uploads`."""
    uploads.mkdir(parents=True, exist_ok=True)
    dashboard = create_app(settings)
    tidings = Tidings(settings, base_url=PREFIX)
    engine = create_async_engine(sqlalchemy_url(settings.database_url))
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with dashboard.lifespan(app), tidings:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            yield
        await engine.dispose()

    async def session() -> AsyncIterator[AsyncSession]:
        async with sessions() as opened:
            yield opened

    app = FastAPI(title="tidings example", lifespan=lifespan)
    app.mount(PREFIX, dashboard)

    @app.exception_handler(TidingsError)
    async def tidings_error(request: Request, exc: TidingsError) -> JSONResponse:
        """tidings' own errors (unknown job, invalid args, …) with their HTTP status."""
        body = {"code": exc.code, "message": exc.message, "details": exc.details}
        return JSONResponse({"error": body}, status_code=exc.status)

    @app.post("/users", status_code=201)
    async def register(
        body: NewUser,
        db: Annotated[AsyncSession, Depends(session)],
        jobs: Annotated[Tidings, Depends(tidings)],
    ) -> dict[str, Any]:
        try:
            async with db.begin():
                user = User(email=body.email)
                db.add(user)
                await db.flush()  # the user's id, inside the transaction
                job = await jobs.submit("send_welcome_email", {"user_id": user.id}, connection=db)
                if body.fail_after_enqueue:
                    raise Rollback
        except Rollback:
            raise HTTPException(409, "rolled back after the enqueue: no user, no job") from None
        except IntegrityError:
            raise HTTPException(409, f"{body.email} is already registered") from None
        return {"user_id": user.id, "job": job}

    @app.post("/uploads", status_code=202)
    async def upload(
        file: UploadFile, jobs: Annotated[Tidings, Depends(tidings)]
    ) -> dict[str, Any]:
        path = uploads / f"{uuid.uuid4().hex}.txt"
        await asyncio.to_thread(path.write_bytes, await file.read())
        job = await jobs.submit("count_words", {"path": str(path)})
        return {"job": job, "page": f"/uploads/{job['id']}"}

    @app.get("/uploads/{job_id}", response_class=HTMLResponse)
    async def progress_page(job_id: uuid.UUID, jobs: Annotated[Tidings, Depends(tidings)]) -> str:
        job = await jobs.get(job_id)
        return PAGE.read_text().replace("{{events}}", html.escape(job["links"]["events"]))

    @app.get("/", response_class=HTMLResponse)
    async def home() -> str:
        return (
            "<h1>tidings example</h1><form action='/uploads' method='post' "
            "enctype='multipart/form-data' id='upload'><input type='file' name='file'>"
            "<button>Count words</button></form>"
            f"<p><a href='{PREFIX}/'>Dashboard</a></p>"
        )

    return app
