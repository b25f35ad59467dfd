"""A small FHIR R4 REST server for the HTTP store's tests: searchset Bundles served from an
``SqlFhirStore``, a bearer-token check, paging ``next`` links, and switches that make it
fail (500), hang, or answer 403 to a read-only token's writes."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import date
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from healtrace.errors import InputError, NotFoundError
from healtrace.records.fhir_store import SqlFhirStore

DATE_PARAMS = ("date", "onset-date", "authoredon", "effective")
FHIR_JSON = "application/fhir+json"


def outcome(status: int, text: str) -> JSONResponse:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }
    return JSONResponse(body, status_code=status, media_type=FHIR_JSON)


class FhirTestServer:
    """``app`` serves ``[base]/fhir/[type]`` searches and ``[type]/[id]`` reads and updates."""

    def __init__(
        self,
        store: SqlFhirStore,
        *,
        tenant_id: str,
        token: str,
        readonly_token: str = "readonly",
        page_size: int = 2,
    ) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.token = token
        self.readonly_token = readonly_token
        self.page_size = page_size
        #: Answer this many requests with 500 before serving again.
        self.fail_next = 0
        #: Answer every request with 500.
        self.always_fail = False
        #: Hold every request until :meth:`release`.
        self.hang = False
        #: ``METHOD path?query`` of every request received.
        self.requests: list[str] = []
        self._released = asyncio.Event()
        self.app = Starlette(
            routes=[
                Route("/fhir/{rtype}", self.search, methods=["GET"]),
                Route("/fhir/{rtype}/{rid}", self.instance, methods=["GET", "PUT"]),
            ]
        )

    def release(self) -> None:
        self._released.set()

    async def _gate(self, request: Request) -> Response | None:
        query = f"?{request.url.query}" if request.url.query else ""
        self.requests.append(f"{request.method} {request.url.path}{query}")
        auth = request.headers.get("authorization", "")
        if auth not in (f"Bearer {self.token}", f"Bearer {self.readonly_token}"):
            return outcome(401, "a valid bearer token is required")
        if request.method != "GET" and auth == f"Bearer {self.readonly_token}":
            return outcome(403, "this token may only read")
        if self.hang:
            # Bounded, so a forgotten release cannot keep the server from shutting down.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._released.wait(), timeout=30)
        if self.always_fail or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            return outcome(500, "the server broke")
        return None

    async def search(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        rtype = request.path_params["rtype"]
        params = request.query_params
        patient = params.get("_id") if rtype == "Patient" else params.get("patient")
        if not patient:
            return outcome(400, "patient is required")
        date_from = date_to = None
        for name in DATE_PARAMS:
            for value in params.getlist(name):
                if value.startswith("ge"):
                    date_from = date.fromisoformat(value[2:])
                elif value.startswith("le"):
                    date_to = date.fromisoformat(value[2:])
        count = min(int(params.get("_count", self.page_size)), self.page_size)
        offset = int(params.get("_offset", "0"))
        found = await self.store.search(
            tenant_id=self.tenant_id,
            patient=patient,
            resource_type=rtype,
            category=params.get("category"),
            code=params.get("code"),
            date_from=date_from,
            date_to=date_to,
            limit=offset + count + 1,
        )
        page = found[offset : offset + count]
        base = str(request.base_url).rstrip("/")
        entries: list[dict[str, Any]] = [
            {
                "fullUrl": f"{base}/fhir/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in page
        ]
        # Servers add OperationOutcomes (and _include'd resources) that are not matches.
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "information", "code": "informational"}],
                },
                "search": {"mode": "outcome"},
            }
        )
        links = [{"relation": "self", "url": str(request.url)}]
        if len(found) > offset + count:
            next_url = request.url.include_query_params(_offset=offset + count)
            links.append({"relation": "next", "url": str(next_url)})
        bundle = {"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries}
        return JSONResponse(bundle, media_type=FHIR_JSON)

    async def instance(self, request: Request) -> Response:
        if (refused := await self._gate(request)) is not None:
            return refused
        rtype, rid = request.path_params["rtype"], request.path_params["rid"]
        if request.method == "PUT":
            try:
                body = json.loads(await request.body())
                if body.get("id") != rid:
                    return outcome(400, "the id in the URL and the body differ")
                await self.store.put(body, tenant_id=self.tenant_id)
            except InputError as exc:
                return outcome(422, exc.detail)
            stored = await self.store.get(rtype, rid, tenant_id=self.tenant_id)
            return JSONResponse(stored, media_type=FHIR_JSON)
        try:
            found = await self.store.get(rtype, rid, tenant_id=self.tenant_id)
        except NotFoundError:
            return outcome(404, f"{rtype}/{rid} is not known")
        return JSONResponse(found, media_type=FHIR_JSON)
