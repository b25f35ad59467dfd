"""Where patient records live: a small FHIR R4 store interface and its two backends.

``SqlFhirStore`` keeps resources in HealTrace's own database (SQLite by default, PostgreSQL
by URL), one row per resource with the columns the searches need. ``HttpFhirStore``
(``healtrace.records.fhir_http``) talks to any FHIR R4 server.

Everything written is validated with the ``fhir.resources`` R4B models first; a resource
that fails is refused with ``fhir_invalid`` naming the first problem. Bundles load entry by
entry: valid entries are stored, the others are reported. ``urn:uuid:`` full URLs (what
transaction Bundles use, carebundle's among them) become the resources' ids and the
references between entries are rewritten to ``Type/id``, so loading the same Bundle twice
stores the same resources once.

Searches return resources newest first by their clinical date (``effective[x]``,
``onset[x]``, ``authoredOn`` …; undated resources last).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, assert_never, runtime_checkable

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from healtrace.errors import NotFoundError
from healtrace.records._fhir_resources import (
    DEFAULT_MAX_BUNDLE_BYTES,
    MAX_SEARCH,
    EntryError,
    FhirInput,
    FhirUnauthorized,
    FhirUnavailable,
    LoadReport,
    PreparedResource,
    check_type,
    load_json,
    patient_param,
    prepare_bundle,
    prepare_resource,
)
from healtrace.records.fhir_http import HttpFhirStore
from healtrace.records.fhir_tables import FhirResourceRow
from healtrace.storage.database import Database
from healtrace.storage.models import iso_utc, utcnow

if TYPE_CHECKING:
    from healtrace.config import Settings

__all__ = [
    "EntryError",
    "FhirInput",
    "FhirStore",
    "FhirUnauthorized",
    "FhirUnavailable",
    "HttpFhirStore",
    "LoadReport",
    "SqlFhirStore",
    "open_fhir_store",
]


@runtime_checkable
class FhirStore(Protocol):
    """Patient records of many tenants; every call names the tenant it acts for."""

    async def put(self, resource: FhirInput, *, tenant_id: str) -> str:
        """Validate and store (create or replace) one resource; returns its id."""
        ...

    async def put_bundle(self, bundle: FhirInput, *, tenant_id: str) -> LoadReport:
        """Store the valid entries of a transaction, batch or collection Bundle."""
        ...

    async def get(self, resource_type: str, id: str, *, tenant_id: str) -> dict[str, Any]:
        """One resource; ``NotFoundError`` (``fhir_not_found``) if there is none."""
        ...

    async def search(
        self,
        *,
        tenant_id: str,
        patient: str,
        resource_type: str,
        category: str | None = None,
        code: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """A patient's resources of one type, newest first by clinical date."""
        ...

    async def aclose(self) -> None:
        """Release connections the store opened itself."""
        ...


class SqlFhirStore:
    """FHIR resources in HealTrace's own database, table ``fhir_resources``.

    Every statement filters by tenant. With ``Database("sqlite:///:memory:")`` it doubles
    as the in-process fake of the interface.
    """

    def __init__(self, db: Database, *, max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES) -> None:
        self._db = db
        self._max_bundle_bytes = max_bundle_bytes

    async def aclose(self) -> None:
        """The database belongs to the caller; nothing to close."""

    async def put(self, resource: FhirInput, *, tenant_id: str) -> str:
        prepared = prepare_resource(load_json(resource))
        await self._db.run(lambda s: self._upsert(s, tenant_id, [prepared]))
        return prepared.id

    async def put_bundle(self, bundle: FhirInput, *, tenant_id: str) -> LoadReport:
        prepared, errors = prepare_bundle(load_json(bundle, max_bytes=self._max_bundle_bytes))
        items = [item for _, item in prepared]
        await self._db.run(lambda s: self._upsert(s, tenant_id, items))
        return LoadReport(stored=[item.ref for item in items], errors=errors)

    def _upsert(self, session: Session, tenant_id: str, items: list[PreparedResource]) -> None:
        if not items:
            return
        now = utcnow()
        stamp = iso_utc(now, "milliseconds")
        # A Bundle may carry one resource twice; the last one wins, as it would in sequence.
        latest = {(item.resource_type, item.id): item for item in items}
        rows = [
            {
                "tenant_id": tenant_id,
                "resource_type": item.resource_type,
                "id": item.id,
                "patient_id": item.patient_id,
                "categories": item.categories,
                "codes": item.codes,
                "clinical_date": item.clinical_date,
                "last_updated": now,
                "resource": {
                    **item.resource,
                    "meta": {**item.resource.get("meta", {}), "lastUpdated": stamp},
                },
            }
            for item in latest.values()
        ]
        changing = (
            "patient_id",
            "categories",
            "codes",
            "clinical_date",
            "last_updated",
            "resource",
        )
        keys = ["tenant_id", "resource_type", "id"]
        if self._db.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            lite = sqlite_insert(FhirResourceRow)
            lite = lite.on_conflict_do_update(
                index_elements=keys,
                set_={
                    **{c: lite.excluded[c] for c in changing},
                    "resource": lite.excluded.resource,
                },
            )
            session.execute(lite, rows)
        else:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            pg = pg_insert(FhirResourceRow)
            pg = pg.on_conflict_do_update(
                index_elements=keys,
                set_={c: pg.excluded[c] for c in changing},
            )
            session.execute(pg, rows)

    async def get(self, resource_type: str, id: str, *, tenant_id: str) -> dict[str, Any]:
        def read(session: Session) -> dict[str, Any] | None:
            row = session.get(FhirResourceRow, (tenant_id, resource_type, id))
            return dict(row.resource) if row is not None else None

        found = await self._db.run(read)
        if found is None:
            raise NotFoundError(f"{resource_type}/{id}", code="fhir_not_found")
        return found

    def _has_token(self, column: Any, token: str) -> ColumnElement[bool]:
        wrapped = f"\n{token}\n"
        # instr/strpos: an exact, case-sensitive substring test (LIKE is neither on SQLite).
        if self._db.is_sqlite:
            return func.instr(column, wrapped) > 0
        return func.strpos(column, wrapped) > 0

    async def search(
        self,
        *,
        tenant_id: str,
        patient: str,
        resource_type: str,
        category: str | None = None,
        code: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        row = FhirResourceRow
        stmt = select(row.resource).where(
            row.tenant_id == tenant_id,
            row.patient_id == patient_param(patient),
            row.resource_type == check_type(resource_type),
        )
        if category:
            stmt = stmt.where(self._has_token(row.categories, category))
        if code:
            stmt = stmt.where(self._has_token(row.codes, code))
        if date_from is not None:
            start = datetime(date_from.year, date_from.month, date_from.day, tzinfo=UTC)
            stmt = stmt.where(row.clinical_date >= start)
        if date_to is not None:
            end = datetime(date_to.year, date_to.month, date_to.day, tzinfo=UTC)
            stmt = stmt.where(row.clinical_date < end + timedelta(days=1))
        stmt = stmt.order_by(
            row.clinical_date.desc().nulls_last(), row.last_updated.desc(), row.id
        ).limit(max(0, min(limit, MAX_SEARCH)))

        def run(session: Session) -> list[dict[str, Any]]:
            return [dict(r) for r in session.scalars(stmt)]

        return await self._db.run(run)


def open_fhir_store(settings: Settings, db: Database) -> FhirStore:
    """The store ``settings.fhir`` configures (``HEALTRACE_FHIR__BACKEND``)."""
    config = settings.fhir
    if config.backend == "embedded":
        return SqlFhirStore(db, max_bundle_bytes=config.max_bundle_bytes)
    if config.backend == "http":
        return HttpFhirStore(
            config.base_url,
            config.token,
            timeout_s=config.timeout_s,
            retries=config.retries,
            retry_base_s=config.retry_base_s,
            page_size=config.page_size,
            tenant_id=config.tenant or None,
            max_bundle_bytes=config.max_bundle_bytes,
        )
    assert_never(config.backend)
