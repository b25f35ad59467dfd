"""Settings of the FHIR store (``HEALTRACE_FHIR__*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class FhirConfig(BaseModel):
    """Where patient records come from: the embedded store or any FHIR R4 server."""

    #: ``embedded``: the ``fhir_resources`` table of HealTrace's own database.
    #: ``http``: a FHIR R4 server at ``base_url`` (one server, hence one tenant, per deployment).
    backend: Literal["embedded", "http"] = "embedded"
    #: The server's base, e.g. ``https://fhir.hospital.example/r4`` (``http`` backend only).
    base_url: str = ""
    #: The tenant whose records that server holds; empty: this deployment's only tenant.
    #: Calls for another tenant are refused, never sent to the server.
    tenant: str = ""
    #: Bearer token sent to the server; empty sends no Authorization header. Never logged.
    token: SecretStr = SecretStr("")
    #: Time limit of one HTTP request to the server.
    timeout_s: float = Field(default=10.0, gt=0)
    #: Extra attempts after a 5xx answer or a timeout, with doubling waits in between.
    retries: int = Field(default=2, ge=0, le=10)
    #: First wait before a retry.
    retry_base_s: float = Field(default=0.5, ge=0)
    #: Resources asked for per search page (``_count``).
    page_size: int = Field(default=50, ge=1, le=1000)
    #: Largest bundle ``put_bundle`` and ``healtrace records load`` accept, in bytes of JSON.
    max_bundle_bytes: int = Field(default=20_000_000, ge=1)
    #: Results per lab test kept in a record summary (newest first).
    labs_per_code: int = Field(default=3, ge=1, le=50)
