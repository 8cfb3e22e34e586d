"""Builds the producer's FastAPI app from settings; `pmsq api` serves it with uvicorn."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from api.context import ApiContext
from api.errors import install_error_handlers
from api.routes import admin, logs, syncs, writes
from api.services.idempotency import IdempotencyService
from api.services.integrations import IntegrationService
from api.services.job_logs import JobLogService
from api.services.records import RecordService
from api.services.retry import RetryService
from api.services.syncs import SyncService
from api.services.writes import WriteService
from pmsq import __version__
from pmsq.crypto import CredentialCipher
from pmsq.settings import Settings
from workers.dispatch import Dispatcher
from workers.flow.backend import FlowControl
from workers.publisher import Publisher


def create_app(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: Publisher,
    flow: FlowControl,
) -> FastAPI:
    """The API. `publisher` puts admitted jobs on the broker (Celery in production); `flow`
    is the flow control the API admits new writes through."""
    dispatcher = Dispatcher(session_factory, publisher, flow, settings)
    cipher = CredentialCipher(settings.fernet_keys)
    ctx = ApiContext(
        settings=settings,
        session_factory=session_factory,
        writes=WriteService(session_factory, dispatcher),
        integrations=IntegrationService(session_factory, cipher, flow, settings.rate_margin_ms),
        retries=RetryService(session_factory, dispatcher),
        job_logs=JobLogService(session_factory),
        idempotency=IdempotencyService(session_factory),
        syncs=SyncService(session_factory, dispatcher),
        records=RecordService(session_factory),
    )
    app = FastAPI(
        title="pmsq",
        version=__version__,
        description="Asynchronous writes to Property Management Systems, Propexo-compatible.",
    )
    install_error_handlers(app)
    app.include_router(admin.build_router(ctx))
    app.include_router(logs.build_router(ctx))
    app.include_router(syncs.build_router(ctx))
    app.include_router(writes.build_router(ctx))

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app
