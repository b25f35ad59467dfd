"""``HttpFhirStore``: the FHIR store interface over any FHIR R4 server's REST API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import date
from typing import Any

import httpx
from pydantic import SecretStr

from healtrace.errors import ConfigurationError, InputError, NotFoundError
from healtrace.records._fhir_resources import (
    DATE_PARAMS,
    DEFAULT_MAX_BUNDLE_BYTES,
    MAX_SEARCH,
    EntryError,
    FhirInput,
    FhirUnauthorized,
    FhirUnavailable,
    LoadReport,
    PreparedResource,
    check_id,
    check_type,
    concepts,
    invalid,
    load_json,
    newest_first,
    path,
    patient_param,
    prepare_bundle,
    prepare_resource,
)


def _outcome_text(response: httpx.Response) -> str:
    """The diagnostics of an OperationOutcome answer, if there is one."""
    try:
        body = response.json()
    except ValueError:
        return ""
    texts: list[str] = []
    for issue in concepts(body.get("issue") if isinstance(body, dict) else None):
        text = issue.get("diagnostics") or path(issue, "details.text")
        if isinstance(text, str) and text:
            texts.append(text)
    return "; ".join(texts)[:300]


class HttpFhirStore:
    """A FHIR R4 server over HTTP (``Authorization: Bearer``).

    One server holds one tenant's records: with ``tenant_id`` set, calls for any other
    tenant are refused. 5xx answers and timeouts are retried ``retries`` times with
    doubling waits, then raise ``FhirUnavailable``; 401/403 raise ``FhirUnauthorized``,
    404 ``NotFoundError``. Writes are ``PUT [base]/[type]/[id]`` (ids are chosen here), so
    a retried write cannot create a duplicate.
    """

    def __init__(
        self,
        base_url: str,
        token: str | SecretStr = "",
        *,
        http: httpx.AsyncClient | None = None,
        timeout_s: float = 10.0,
        retries: int = 2,
        retry_base_s: float = 0.5,
        page_size: int = 50,
        tenant_id: str | None = None,
        max_bundle_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
        sleep: Callable[[float], Any] = asyncio.sleep,
    ) -> None:
        if not base_url:
            raise ConfigurationError("set HEALTRACE_FHIR__BASE_URL to the FHIR server's base URL")
        self._base = httpx.URL(base_url.rstrip("/") + "/")
        secret = token.get_secret_value() if isinstance(token, SecretStr) else token
        self._headers = {"Accept": "application/fhir+json"}
        if secret:
            self._headers["Authorization"] = f"Bearer {secret}"
        self._own_client = http is None
        self._http = http if http is not None else httpx.AsyncClient(timeout=timeout_s)
        self._timeout = timeout_s
        self._retries = retries
        self._retry_base_s = retry_base_s
        self._page_size = page_size
        self._tenant_id = tenant_id
        self._max_bundle_bytes = max_bundle_bytes
        self._sleep = sleep

    async def aclose(self) -> None:
        if self._own_client:
            await self._http.aclose()

    def _check_tenant(self, tenant_id: str) -> None:
        if self._tenant_id is not None and tenant_id != self._tenant_id:
            raise ConfigurationError(
                f"this FHIR server (HEALTRACE_FHIR__BASE_URL) holds the records of tenant "
                f"{self._tenant_id!r} only, not {tenant_id!r}"
            )

    def _url(self, *parts: str) -> httpx.URL:
        return self._base.join("/".join(parts))

    def _same_server(self, url: httpx.URL) -> bool:
        # The token goes only where it was configured to go, whatever a next link says.
        base = self._base
        return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port) and (
            url.path.startswith(base.path)
        )

    async def _request(
        self,
        method: str,
        url: httpx.URL,
        *,
        params: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        failure: FhirUnavailable | None = None
        cause: Exception | None = None
        for attempt in range(self._retries + 1):
            if attempt:
                await self._sleep(self._retry_base_s * 2 ** (attempt - 1))
            headers = dict(self._headers)
            if body is not None:
                headers["Content-Type"] = "application/fhir+json"
            try:
                response = await self._http.request(
                    method,
                    url,
                    params=tuple(params) if params else None,
                    content=json.dumps(body).encode() if body is not None else None,
                    headers=headers,
                    timeout=self._timeout,
                )
            except httpx.TimeoutException as exc:
                failure, cause = FhirUnavailable("the FHIR server did not answer in time"), exc
                continue
            except httpx.TransportError as exc:
                failure = FhirUnavailable(f"the FHIR server could not be reached: {exc!r}"[:200])
                cause = exc
                continue
            status = response.status_code
            if status in (401, 403):
                raise FhirUnauthorized(f"HTTP {status}", status=status)
            if status == 404:
                raise NotFoundError(str(url.path), code="fhir_not_found")
            if status in (400, 409, 412, 422):
                raise invalid(_outcome_text(response) or f"the FHIR server answered HTTP {status}")
            if status >= 500:
                failure, cause = FhirUnavailable(f"the FHIR server answered HTTP {status}"), None
                continue
            if status >= 300:
                raise FhirUnavailable(f"the FHIR server answered HTTP {status}")
            return response
        assert failure is not None
        raise failure from cause

    @staticmethod
    def _body(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise FhirUnavailable("the FHIR server's answer is not JSON") from exc
        if not isinstance(body, dict):
            raise FhirUnavailable("the FHIR server's answer is not a resource")
        return body

    async def put(self, resource: FhirInput, *, tenant_id: str) -> str:
        self._check_tenant(tenant_id)
        prepared = prepare_resource(load_json(resource))
        await self._write(prepared)
        return prepared.id

    async def _write(self, item: PreparedResource) -> None:
        await self._request("PUT", self._url(item.resource_type, item.id), body=item.resource)

    async def put_bundle(self, bundle: FhirInput, *, tenant_id: str) -> LoadReport:
        self._check_tenant(tenant_id)
        prepared, errors = prepare_bundle(load_json(bundle, max_bytes=self._max_bundle_bytes))
        report = LoadReport(errors=errors)
        for index, item in prepared:
            try:
                await self._write(item)
            except InputError as exc:
                report.errors.append(
                    EntryError(index=index, resource_type=item.resource_type, message=exc.detail)
                )
            else:
                report.stored.append(item.ref)
        report.errors.sort(key=lambda e: e.index)
        return report

    async def get(self, resource_type: str, id: str, *, tenant_id: str) -> dict[str, Any]:
        self._check_tenant(tenant_id)
        url = self._url(check_type(resource_type), check_id(id))
        body = self._body(await self._request("GET", url))
        if body.get("resourceType") != resource_type:
            raise FhirUnavailable(f"the FHIR server answered with a {body.get('resourceType')}")
        return body

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
        self._check_tenant(tenant_id)
        kind = check_type(resource_type)
        limit = max(0, min(limit, MAX_SEARCH))
        if limit == 0:
            return []
        date_param = DATE_PARAMS.get(kind, "date")
        params = [("_id" if kind == "Patient" else "patient", patient_param(patient))]
        if category:
            params.append(("category", category))
        if code:
            params.append(("code", code))
        if date_param and date_from is not None:
            params.append((date_param, f"ge{date_from.isoformat()}"))
        if date_param and date_to is not None:
            params.append((date_param, f"le{date_to.isoformat()}"))
        params.append(("_count", str(min(limit, self._page_size))))
        if date_param:
            params.append(("_sort", f"-{date_param}"))

        found: list[dict[str, Any]] = []
        url: httpx.URL | None = self._url(kind)
        query: list[tuple[str, str]] | None = params
        while url is not None and len(found) < limit:
            bundle = self._body(await self._request("GET", url, params=query))
            if bundle.get("resourceType") != "Bundle":
                raise FhirUnavailable("the FHIR server's search answer is not a Bundle")
            for entry in concepts(bundle.get("entry")):
                mode = path(entry, "search.mode")
                resource = entry.get("resource")
                if (
                    mode in (None, "match")
                    and isinstance(resource, dict)
                    and resource.get("resourceType") == kind
                ):
                    found.append(resource)
            url, query = self._next_link(bundle), None
        return newest_first(found)[:limit]

    def _next_link(self, bundle: dict[str, Any]) -> httpx.URL | None:
        for link in concepts(bundle.get("link")):
            if link.get("relation") == "next" and isinstance(link.get("url"), str):
                url = self._base.join(link["url"])
                if not self._same_server(url):
                    raise FhirUnavailable("the FHIR server's next link points to another server")
                return url
        return None
