"""Reading FHIR resources: validation (R4B models), ids, references and search index values.

Shared by the embedded and the HTTP store, and by the record summary.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeAlias

from pydantic import BaseModel, ValidationError

from healtrace.errors import ConfigurationError, HealTraceError, InputError

#: A resource or Bundle as parsed JSON, or as JSON text.
FhirInput: TypeAlias = dict[str, Any] | str | bytes

#: Most resources one search returns.
MAX_SEARCH = 1000
DEFAULT_MAX_BUNDLE_BYTES = 20_000_000
BUNDLE_TYPES = ("transaction", "batch", "collection")

_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_TYPE_RE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")

#: Where each resource type keeps its clinical date, in order of preference.
_DATE_FIELDS: dict[str, tuple[str, ...]] = {
    "Observation": ("effectiveDateTime", "effectiveInstant", "effectivePeriod.start", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
    "AllergyIntolerance": ("recordedDate", "onsetDateTime", "onsetPeriod.start"),
    "Encounter": ("period.start",),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "Immunization": ("occurrenceDateTime",),
    "DocumentReference": ("date",),
    "CarePlan": ("period.start",),
}

#: The FHIR search parameter of that date, where it is not ``date``.
DATE_PARAMS: dict[str, str | None] = {
    "Condition": "onset-date",
    "MedicationRequest": "authoredon",
    "MedicationStatement": "effective",
    "Patient": None,
    "Practitioner": None,
}


class FhirUnavailable(HealTraceError):
    """The FHIR server failed (5xx), timed out or could not be reached, after the retries."""

    code = "fhir_unavailable"


class FhirUnauthorized(ConfigurationError):
    """The FHIR server refused the configured token (401/403)."""

    code = "fhir_unauthorized"


class EntryError(BaseModel):
    """Why one Bundle entry was not stored. ``index`` counts entries from 0."""

    index: int
    resource_type: str = ""
    message: str


class LoadReport(BaseModel):
    """What ``put_bundle`` stored (``Type/id``, in Bundle order) and what it refused."""

    stored: list[str] = []
    errors: list[EntryError] = []

    @property
    def by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for ref in self.stored:
            kind = ref.split("/", 1)[0]
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def invalid(detail: str) -> InputError:
    return InputError(detail, code="fhir_invalid")


def load_json(payload: FhirInput, *, max_bytes: int | None = None) -> Any:
    """Parsed JSON of ``payload`` (text is parsed; parsed data is returned as it is)."""
    if isinstance(payload, str | bytes):
        size = len(payload.encode() if isinstance(payload, str) else payload)
        if max_bytes is not None and size > max_bytes:
            raise InputError(code="fhir_bundle_too_large", size=size, limit=max_bytes)
        try:
            return json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise invalid(f"the payload is not JSON ({exc})") from exc
    return payload


def validate_resource(data: Any) -> dict[str, Any]:
    """``data`` if it is a valid FHIR R4 (R4B models) resource; ``fhir_invalid`` if not."""
    from fhir.resources.R4B import get_fhir_model_class

    if not isinstance(data, dict):
        raise invalid("a resource is a JSON object")
    kind = data.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise invalid("resourceType is missing")
    try:
        model = get_fhir_model_class(kind)
    except ValueError as exc:
        raise invalid(f"{kind!r} is not a FHIR R4 resource type") from exc
    try:
        model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise invalid(f"{kind}.{where}: {first['msg']}"[:300]) from exc
    return data


def path(resource: dict[str, Any], dotted: str) -> Any:
    node: Any = resource
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def parse_fhir_datetime(value: Any) -> datetime | None:
    """A FHIR ``date``/``dateTime``/``instant`` as an aware UTC datetime (partial: its start)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        if len(text) == 4:
            return datetime(int(text), 1, 1, tzinfo=UTC)
        if len(text) == 7:
            return datetime(int(text[:4]), int(text[5:7]), 1, tzinfo=UTC)
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC)


def clinical_date(resource: dict[str, Any]) -> datetime | None:
    """When the resource happened clinically, for sorting and date searches."""
    for field in _DATE_FIELDS.get(str(resource.get("resourceType")), ()):
        found = parse_fhir_datetime(path(resource, field))
        if found is not None:
            return found
    return None


def patient_of_reference(reference: str) -> str:
    """``x`` of ``Patient/x``, ``https://…/Patient/x/_history/2``; empty for anything else."""
    parts = reference.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "Patient" and _ID_RE.match(parts[i + 1]):
            return parts[i + 1]
    return ""


def patient_id_of(resource: dict[str, Any]) -> str:
    """The patient a resource is about (a Patient: itself); empty if it names none."""
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id") or "")
    for field in ("subject", "patient"):
        ref = resource.get(field)
        if isinstance(ref, dict) and isinstance(ref.get("reference"), str):
            found = patient_of_reference(ref["reference"])
            if found:
                return found
    return ""


def concepts(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, dict)]
    return []


def _tokens(value: Any) -> set[str]:
    """Search tokens of CodeableConcepts: ``code`` and ``system|code`` of every coding."""
    found: set[str] = set()
    if isinstance(value, list):
        # AllergyIntolerance.category is a list of plain codes.
        found |= {item for item in value if isinstance(item, str)}
    for concept in concepts(value):
        for coding in concepts(concept.get("coding")):
            code = coding.get("code")
            if not isinstance(code, str) or not code:
                continue
            found.add(code)
            system = coding.get("system")
            if isinstance(system, str) and system:
                found.add(f"{system}|{code}")
    return found


def _pack(tokens: Iterable[str]) -> str:
    clean = sorted({t.replace("\n", " ") for t in tokens if t})
    return "\n" + "\n".join(clean) + "\n" if clean else ""


@dataclass(frozen=True, slots=True)
class PreparedResource:
    """A validated resource with its id and the values the store indexes."""

    resource_type: str
    id: str
    resource: dict[str, Any]
    patient_id: str
    categories: str
    codes: str
    clinical_date: datetime | None

    @property
    def ref(self) -> str:
        return f"{self.resource_type}/{self.id}"


def prepare_resource(data: Any) -> PreparedResource:
    """Validate ``data`` (a copy gets an id if it has none) and compute its index values."""
    if isinstance(data, dict) and not data.get("id"):
        data = {**data, "id": uuid.uuid4().hex}
    resource = validate_resource(data)
    kind = str(resource["resourceType"])
    if kind == "Bundle":
        raise invalid("a Bundle is loaded with put_bundle, entry by entry")
    codes = _tokens(resource.get("code")) | _tokens(resource.get("medicationCodeableConcept"))
    return PreparedResource(
        resource_type=kind,
        id=str(resource["id"]),
        resource=copy.deepcopy(resource),
        patient_id=patient_id_of(resource),
        categories=_pack(_tokens(resource.get("category"))),
        codes=_pack(codes),
        clinical_date=clinical_date(resource),
    )


def _id_from_url(url: Any, kind: str) -> str:
    if not isinstance(url, str) or not url:
        return ""
    for prefix in ("urn:uuid:", "urn:oid:"):
        if url.startswith(prefix):
            rest = url[len(prefix) :]
            return rest if _ID_RE.match(rest) else ""
    parts = url.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == kind and _ID_RE.match(parts[-1]):
        return parts[-1]
    return ""


def _rewrite_references(node: Any, targets: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in targets:
                out[key] = targets[value]
            else:
                out[key] = _rewrite_references(value, targets)
        return out
    if isinstance(node, list):
        return [_rewrite_references(item, targets) for item in node]
    return node


def prepare_bundle(bundle: Any) -> tuple[list[tuple[int, PreparedResource]], list[EntryError]]:
    """The valid entries of a Bundle (with their indexes) and the errors of the others.

    Raises ``fhir_invalid`` only when the Bundle itself is unusable.
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise invalid("expected a Bundle (resourceType 'Bundle')")
    kind = bundle.get("type")
    if kind not in BUNDLE_TYPES:
        raise invalid(f"Bundle.type must be transaction, batch or collection (got {kind!r})")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise invalid("Bundle.entry must be a list")

    errors: list[EntryError] = []
    pending: list[tuple[int, dict[str, Any]]] = []
    targets: dict[str, str] = {}
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            errors.append(EntryError(index=index, message="the entry has no resource"))
            continue
        rtype = resource.get("resourceType")
        rtype = rtype if isinstance(rtype, str) else ""
        request = entry.get("request") if isinstance(entry.get("request"), dict) else {}
        method = str(request.get("method") or "POST").upper()
        if method not in ("POST", "PUT"):
            errors.append(
                EntryError(
                    index=index,
                    resource_type=rtype,
                    message=f"{method} entries are not loaded (only POST and PUT)",
                )
            )
            continue
        rid = resource.get("id")
        if not isinstance(rid, str) or not rid:
            rid = (
                _id_from_url(entry.get("fullUrl"), rtype)
                or _id_from_url(request.get("url"), rtype)
                or uuid.uuid4().hex
            )
        full_url = entry.get("fullUrl")
        if isinstance(full_url, str) and full_url and rtype:
            targets[full_url] = f"{rtype}/{rid}"
        pending.append((index, {**resource, "id": rid}))

    prepared: list[tuple[int, PreparedResource]] = []
    for index, resource in pending:
        try:
            prepared.append((index, prepare_resource(_rewrite_references(resource, targets))))
        except InputError as exc:
            errors.append(
                EntryError(
                    index=index,
                    resource_type=str(resource.get("resourceType") or ""),
                    message=exc.detail,
                )
            )
    errors.sort(key=lambda e: e.index)
    return prepared, errors


def check_type(resource_type: str) -> str:
    if not _TYPE_RE.match(resource_type):
        raise invalid(f"{resource_type!r} is not a FHIR resource type")
    return resource_type


def check_id(value: str, what: str = "id") -> str:
    if not _ID_RE.match(value):
        raise invalid(f"{value!r} is not a FHIR {what}")
    return value


def patient_param(patient: str) -> str:
    return check_id(patient.removeprefix("Patient/"), "patient id")


def newest_first(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    floor = datetime.min.replace(tzinfo=UTC)

    def key(resource: dict[str, Any]) -> tuple[bool, datetime]:
        at = clinical_date(resource)
        return at is not None, at or floor

    return sorted(resources, key=key, reverse=True)
