"""Builds the producer's FastAPI app from settings; `pmsq api` serves it with uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from pmsq import __version__
from pmsq.api.auth import AccountTokens
from pmsq.api.context import ApiContext
from pmsq.api.errors import document_errors_as_served, install_error_handlers
from pmsq.api.routes import admin, logs, properties, propexo_webhooks, syncs, webhooks, writes
from pmsq.api.services.admission import Admissions, Submitter
from pmsq.api.services.data_access import DataAccessService
from pmsq.api.services.idempotency import IdempotencyKeys
from pmsq.api.services.integrations import IntegrationService
from pmsq.api.services.job_logs import JobLogService
from pmsq.api.services.normalization import NormalizationService
from pmsq.api.services.properties import PropertyService
from pmsq.api.services.records import RecordService
from pmsq.api.services.retry import RetryService
from pmsq.api.services.syncs import SyncService
from pmsq.api.services.webhooks import WebhookService
from pmsq.api.services.writes import WriteService
from pmsq.api.signed_links import SignedLinks
from pmsq.crypto import CredentialCipher
from pmsq.metrics import MetricsRecorder
from pmsq.models.base import utcnow
from pmsq.models.schemas import HealthOut
from pmsq.outbound import DestinationPolicy, parse_hosts
from pmsq.settings import Settings
from pmsq.workers.dispatch import Dispatcher
from pmsq.workers.flow.backend import FlowControl
from pmsq.workers.publisher import Publisher


def routers(ctx: ApiContext) -> list[APIRouter]:
    """The API's routers in the order a request is matched against them: the first route
    whose path and method match takes it. `/v1/webhooks/...` comes before the routes of
    `/v1/{model}/...`, which would take it for a model; the write routes come next, since
    every write is matched against the routes before them, and take no path of the routes
    after them (tests/unit/test_api_routes.py holds this)."""
    return [
        propexo_webhooks.build_router(ctx),
        writes.build_router(ctx),
        admin.build_router(ctx),
        properties.build_router(ctx),
        properties.build_property_lists_router(ctx),
        logs.build_router(ctx),
        syncs.build_router(ctx),
        webhooks.build_router(ctx),
    ]


def create_app(
    settings: Settings,
    session_factory: sessionmaker[Session],
    publisher: Publisher,
    flow: FlowControl,
    metrics: Sequence[Collector] = (),
    recorder: MetricsRecorder | None = None,
    clock: Callable[[], datetime] = utcnow,
    destinations: DestinationPolicy | None = None,
    submitter: Callable[[Dispatcher], Submitter] = Admissions,
) -> FastAPI:
    """The API. `publisher` puts admitted jobs on the broker (Celery in production); `flow`
    is the flow control the API admits new writes through; `clock` dates writes and their
    Idempotency-Keys (tests move it to see keys expire); `destinations` judges the URLs
    integrations and webhooks are saved with (from the settings unless given: tests pass one
    with a stub resolver); `submitter` makes what admits accepted writes from the dispatcher
    (by default `Admissions`, on threads of its own; the contract tests' harness passes the
    dispatcher itself, which admits in the request)."""
    destinations = destinations or DestinationPolicy.from_settings(settings)
    dispatcher = Dispatcher(session_factory, publisher, flow, settings, metrics=recorder)
    admissions = submitter(dispatcher)
    cipher = CredentialCipher(settings.fernet_keys)
    sync_service = SyncService(session_factory, dispatcher)
    ctx = ApiContext(
        settings=settings,
        session_factory=session_factory,
        accounts=AccountTokens(session_factory),
        writes=WriteService(
            session_factory, admissions, IdempotencyKeys(settings.idempotency_ttl_s), clock
        ),
        integrations=IntegrationService(
            session_factory,
            cipher,
            flow,
            settings.rate_margin_ms,
            destinations,
            parse_hosts(settings.allowed_pms_hosts),
        ),
        retries=RetryService(session_factory, dispatcher),
        job_logs=JobLogService(session_factory, SignedLinks(settings.fernet_keys[0])),
        syncs=sync_service,
        records=RecordService(session_factory),
        webhooks=WebhookService(session_factory, cipher, destinations),
        properties=PropertyService(session_factory),
        normalization=NormalizationService(session_factory),
        data_access=DataAccessService(session_factory, sync_service),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if isinstance(admissions, Admissions):
            await run_in_threadpool(admissions.close)

    app = FastAPI(
        lifespan=lifespan,
        title="pmsq",
        version=__version__,
        description="Asynchronous writes to Property Management Systems, Propexo-compatible.",
    )
    install_error_handlers(app)
    document_errors_as_served(app)
    for router in routers(ctx):
        app.include_router(router)

    @app.get("/healthz", tags=["ops"], response_model=HealthOut)
    def healthz() -> HealthOut:
        return HealthOut(ok=True)

    if metrics:
        registry = CollectorRegistry(auto_describe=True)
        for collector in metrics:
            registry.register(collector)

        @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
        def prometheus_metrics() -> PlainTextResponse:
            """Cluster-wide Prometheus metrics (every worker's, read from Redis)."""
            return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
