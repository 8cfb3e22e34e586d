"""Integrations: create, read, list, update; credentials checked against the vendor's model
and encrypted on the way in."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, object_session, sessionmaker

from pmsq.api.pagination import PageRequest, paginate_batched
from pmsq.api.services.integration_views import (
    SyncSummary,
    integration_view,
    sync_summaries,
)
from pmsq.crypto import CredentialCipher
from pmsq.errors import Conflict, DestinationRefused, NotFound, ValidationFailed
from pmsq.models.base import iso_z, utcnow
from pmsq.models.enums import CADENCE_SECONDS, TERMINAL_STATUSES, Cadence, vendor_on_wire
from pmsq.models.integration import Integration
from pmsq.models.job import Job
from pmsq.models.schemas import IntegrationCreate, IntegrationOut, IntegrationUpdate, check_rate
from pmsq.outbound import DestinationPolicy, host_refusal
from pmsq.pms.profiles import VendorProfile
from pmsq.pms.registry import VENDORS, Registry
from pmsq.pms.vendor import VendorSpec
from pmsq.scheduler.schedules import refresh_schedule
from pmsq.workers.flow.backend import FlowControl
from pmsq.workers.flow.limits import Limits


class IntegrationService:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        cipher: CredentialCipher,
        flow: FlowControl,
        rate_margin_ms: float,
        destinations: DestinationPolicy,
        allowed_pms_hosts: frozenset[str] = frozenset(),
        vendors: Registry = VENDORS,
    ) -> None:
        """`destinations` judges base_urls as they are saved (the workers judge them again at
        every connection); `allowed_pms_hosts` are hosts a fixed-host vendor may use besides
        its own (PMSQ_ALLOWED_PMS_HOSTS); `vendors` are the vendors an integration may name
        (the installed ones outside tests)."""
        self._session_factory = session_factory
        self._cipher = cipher
        self._flow = flow
        self._rate_margin_ms = rate_margin_ms
        self._destinations = destinations
        self._allowed_pms_hosts = allowed_pms_hosts
        self._vendors = vendors

    def create(self, account_id: str, spec: IntegrationCreate) -> IntegrationOut:
        """A 400 (ValidationFailed) names the field at fault: an unknown vendor, a refused
        base_url, a credentials field that does not fit the vendor's model."""
        vendor = self._vendor(spec.integration_vendor)
        if spec.credentials:
            vendor.check_credentials(spec.credentials)
        self._check_base_url(vendor, spec.base_url)
        values = spec.model_dump(exclude={"credentials"}, mode="json")
        with self._session_factory.begin() as session:
            based_on = (
                _based_on(session, account_id, spec.based_on_integration_id)
                if spec.based_on_integration_id is not None
                else None
            )
            integration = Integration(account_id=account_id, **values)
            if spec.credentials is not None:
                integration.credentials_encrypted = self._cipher.encrypt(spec.credentials)
            elif based_on is not None:
                integration.credentials_encrypted = based_on.credentials_encrypted
            session.add(integration)
            session.flush()
            refresh_schedule(session, integration, utcnow())
            limits = Limits.of(integration, self._rate_margin_ms)
            out = to_out(integration, self._profile(integration))
        self._flow.set_limits(out.id, limits)
        return out

    def update(
        self, account_id: str, integration_id: str, spec: IntegrationUpdate
    ) -> IntegrationOut:
        changes = spec.model_dump(exclude_unset=True, exclude={"credentials"}, mode="json")
        if changes.get("integration_vendor") is not None:
            self._vendor(changes["integration_vendor"])
        if changes.get("base_url") is not None:
            # Resolved before the transaction opens: a slow DNS answer holds no row lock.
            self._check_address(changes["base_url"])
        with self._session_factory.begin() as session:
            integration = self._owned(session, account_id, integration_id)
            for name, value in changes.items():
                if value is None and name not in {"custom_sync_schedule", "base_url"}:
                    raise ValidationFailed(
                        f"{name} cannot be null", [{"field": name, "reason": "cannot be null"}]
                    )
                setattr(integration, name, value)
            vendor = self._vendor(integration.integration_vendor)
            if changes.keys() & {"base_url", "integration_vendor"}:
                self._check_host(vendor, integration.base_url)
            try:
                check_rate(
                    integration.max_request_frequency, Cadence(integration.max_request_cadence)
                )
            except ValueError as exc:
                raise ValidationFailed(
                    str(exc), [{"field": "max_request_frequency", "reason": str(exc)}]
                ) from None
            if spec.credentials:
                vendor.check_credentials(spec.credentials)
            elif "integration_vendor" in changes and "credentials" not in spec.model_fields_set:
                # The credentials kept must fit the new vendor as well.
                kept = self._cipher.decrypt(integration.credentials_encrypted)
                if kept:
                    vendor.check_credentials(kept)
            if "credentials" in spec.model_fields_set:
                integration.credentials_encrypted = (
                    self._cipher.encrypt(spec.credentials) if spec.credentials else None
                )
            integration.updated_at = utcnow()
            refresh_schedule(session, integration, integration.updated_at)
            limits = Limits.of(integration, self._rate_margin_ms)
            out = to_out(integration, self._profile(integration))
        # Live limits: the next admission of this integration reads these.
        self._flow.set_limits(out.id, limits)
        return out

    def rate_limits(self, account_id: str, integration_id: str) -> dict[str, Any]:
        """Propexo's rate limits (the requests pmsq lets through to the PMS per minute, hour
        and day), with the configured limits, live flow-control usage and what the PMS
        reported."""
        with self._session_factory() as session:
            integration = self._owned(session, account_id, integration_id)
            cadence = Cadence(integration.max_request_cadence)
            per_s = integration.max_request_frequency / CADENCE_SECONDS[cadence]
            configured = {
                "max_request_frequency": integration.max_request_frequency,
                "max_request_cadence": integration.max_request_cadence,
                "max_job_concurrency": integration.max_job_concurrency,
                "request_interval_ms": Limits.of(integration, self._rate_margin_ms).interval_us
                / 1000,
            }
            updated_at = integration.updated_at
            api = f"{vendor_on_wire(integration.integration_vendor)}_BASE"
        usage = self._flow.usage(integration_id)
        minute_limit = int(per_s * 60)
        return {
            "integration_id": integration_id,
            "updated_at": updated_at,
            "minute_limit": minute_limit,
            "api_ratelimits": [
                {
                    "api": api,
                    "updated_at": updated_at,
                    "day_limit": int(per_s * 86_400),
                    "hour_limit": int(per_s * 3600),
                    "minute_limit": minute_limit,
                }
            ],
            "configured": configured,
            "usage": {
                "jobs_in_flight": usage.in_flight,
                "backlog": usage.backlog,
                "next_admission_at": _instant(usage.next_admission_us),
                "paused_until": _instant(usage.paused_until_us),
                "measured_at": _instant(usage.now_us),
            },
            "pms_reported": usage.pms_reported,
        }

    def get(self, account_id: str, integration_id: str) -> IntegrationOut:
        with self._session_factory() as session:
            integration = self._owned(session, account_id, integration_id)
            return to_out(integration, self._profile(integration))

    def list(
        self,
        account_id: str,
        page: PageRequest,
        *,
        vendor: str | None = None,
        is_archived: bool | None = None,
    ) -> dict[str, Any]:
        stmt = select(Integration).where(
            Integration.account_id == account_id, Integration.deleted_at.is_(None)
        )
        if vendor is not None:
            stmt = stmt.where(Integration.integration_vendor == vendor)
        if is_archived is not None:
            stmt = stmt.where(Integration.is_archived.is_(is_archived))
        with self._session_factory() as session:

            def render_page(rows: Sequence[Integration]) -> list[dict[str, Any]]:
                summaries = sync_summaries(session, [row.id for row in rows])
                return [
                    integration_view(
                        session, row, self._profile(row), summaries.get(row.id, SyncSummary())
                    ).model_dump(mode="json")
                    for row in rows
                ]

            return paginate_batched(session, stmt, page, SORTABLE, "created_at:desc", render_page)

    def delete(self, account_id: str, integration_id: str) -> None:
        """Retire the integration; refused (409) while any of its jobs is unfinished."""
        with self._session_factory.begin() as session:
            integration = self._owned(session, account_id, integration_id)
            unfinished = session.scalar(
                select(func.count())
                .select_from(Job)
                .where(
                    Job.integration_id == integration_id,
                    Job.status.not_in([s.value for s in TERMINAL_STATUSES]),
                )
            )
            if unfinished:
                raise Conflict(
                    f"integration '{integration_id}' has {unfinished} unfinished jobs; "
                    "wait for them to finish before deleting it",
                    [{"field": "integration_id", "reason": "has unfinished jobs"}],
                )
            now = utcnow()
            integration.deleted_at = now
            integration.active = False
            integration.is_archived = True
            integration.credentials_encrypted = None
            integration.updated_at = now
            refresh_schedule(session, integration, now)

    def _profile(self, integration: Integration) -> VendorProfile:
        return self._vendors.get(integration.integration_vendor).profile

    @staticmethod
    def _owned(session: Session, account_id: str, integration_id: str) -> Integration:
        return owned_integration(session, account_id, integration_id)

    def _vendor(self, name: str) -> VendorSpec[Any]:
        """The installed vendor called `name`, or a 400 naming `integration_vendor`."""
        if name not in self._vendors:
            reason = f"not an installed vendor (one of {', '.join(self._vendors.names())})"
            raise ValidationFailed(
                f"integration_vendor '{name}' is {reason}",
                [{"field": "integration_vendor", "reason": reason}],
            )
        return self._vendors.get(name)

    def _check_base_url(self, vendor: VendorSpec[Any], base_url: str | None) -> None:
        if base_url is not None:
            self._check_host(vendor, base_url)
            self._check_address(base_url)

    def _check_host(self, vendor: VendorSpec[Any], base_url: str | None) -> None:
        """A vendor with fixed API hosts takes a base_url only on them (or an allowed host)."""
        if base_url is None:
            return
        reason = host_refusal(base_url, vendor.profile.api_hosts, self._allowed_pms_hosts)
        if reason is not None:
            raise _refused_base_url(reason)

    def _check_address(self, base_url: str) -> None:
        """Refuses a base_url known now to lead to an address the workers may not reach."""
        try:
            self._destinations.check_url(base_url)
        except DestinationRefused as exc:
            raise _refused_base_url(exc.message) from None


def _based_on(session: Session, account_id: str, integration_id: str) -> Integration:
    """The account's integration a new one is based on; an unknown id is a 400 naming it."""
    try:
        return owned_integration(session, account_id, integration_id)
    except NotFound:
        raise ValidationFailed(
            f"based_on_integration_id: no integration with id '{integration_id}'",
            [{"field": "based_on_integration_id", "reason": "unknown integration"}],
        ) from None


def _refused_base_url(reason: str) -> ValidationFailed:
    return ValidationFailed(f"base_url: {reason}", [{"field": "base_url", "reason": reason}])


#: Fields the integration list may be ordered by.
SORTABLE = {
    "created_at": Integration.created_at,
    "updated_at": Integration.updated_at,
    "name": Integration.name,
    "integration_vendor": Integration.integration_vendor,
}


def owned_integration(session: Session, account_id: str, integration_id: str) -> Integration:
    """The account's live integration, or NotFound (another account's looks just as absent)."""
    integration = session.get(Integration, integration_id)
    if (
        integration is None
        or integration.account_id != account_id
        or integration.deleted_at is not None
    ):
        raise NotFound(
            f"no integration with id '{integration_id}'",
            [{"field": "integration_id", "reason": "unknown integration"}],
        )
    return integration


def _instant(us: int | None) -> str | None:
    if us is None:
        return None
    return iso_z(datetime.fromtimestamp(us / 1_000_000, UTC))


def to_out(integration: Integration, profile: VendorProfile) -> IntegrationOut:
    """The integration as the API answers it, read through the session that loaded it."""
    session = object_session(integration)
    assert session is not None, "an integration is rendered inside its session"
    return integration_view(session, integration, profile)
