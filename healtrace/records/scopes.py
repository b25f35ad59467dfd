"""SMART on FHIR v2-style scopes: what a consent grant covers.

A grant covers one scope string such as ``patient/Observation.rs`` (read and search the
patient's Observations) or ``patient/Observation.rs?category=laboratory`` (only lab results).
HealTrace only ever reads, so a grant's permissions are ``rs``; a scope asking to create,
update or delete is refused, not silently narrowed.

On chain a grant names ``keccak256(canonical scope)``. The canonical form is exactly
``patient/<Type>.rs`` or ``patient/<Type>.rs?category=<code>`` (``*`` for every type), so the
same permission always has the same hash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eth_hash.auto import keccak

from healtrace.errors import InputError

__all__ = [
    "RESOURCE_TYPES",
    "Scope",
    "candidate_scopes",
    "parse_scope",
]

#: The record types a grant can cover (what the assistant can summarise).
RESOURCE_TYPES = (
    "Observation",
    "Condition",
    "MedicationRequest",
    "MedicationStatement",
    "AllergyIntolerance",
    "DiagnosticReport",
    "Immunization",
    "Procedure",
    "Encounter",
)

_SCOPE = re.compile(
    r"^patient/(?P<type>\*|[A-Z][A-Za-z]{1,63})\.(?P<perms>[cruds]{1,5})"
    r"(?:\?category=(?P<category>[A-Za-z0-9._-]{1,64}))?$"
)


@dataclass(frozen=True, slots=True)
class Scope:
    resource_type: str
    category: str | None = None

    @property
    def canonical(self) -> str:
        base = f"patient/{self.resource_type}.rs"
        return f"{base}?category={self.category}" if self.category else base

    @property
    def hash(self) -> bytes:
        """What the ConsentRegistry stores for this scope."""
        return keccak(self.canonical.encode("utf-8"))

    def covers(self, resource_type: str, category: str | None) -> bool:
        if self.resource_type not in ("*", resource_type):
            return False
        return self.category is None or self.category == category


def parse_scope(text: str) -> Scope:
    """Parse one scope string; InputError(consent_scope_invalid) naming what is wrong."""
    raw = text.strip()
    match = _SCOPE.match(raw)
    if match is None:
        raise InputError(
            f"{raw[:80]!r} is not a scope like patient/Observation.rs[?category=laboratory]",
            code="consent_scope_invalid",
            scope=raw[:80],
        )
    perms = match["perms"]
    if set(perms) - {"r", "s"} or len(set(perms)) != len(perms):
        raise InputError(
            f"{raw[:80]!r} asks for more than read and search (rs)",
            code="consent_scope_invalid",
            scope=raw[:80],
        )
    resource_type = match["type"]
    if resource_type != "*" and resource_type not in RESOURCE_TYPES:
        raise InputError(
            f"{resource_type} is not a record type HealTrace reads",
            code="consent_scope_invalid",
            scope=raw[:80],
        )
    return Scope(resource_type, match["category"])


def candidate_scopes(resource_type: str, category: str | None) -> list[Scope]:
    """Every canonical scope whose grant would allow reading ``resource_type`` (of
    ``category``): the type with that category, the type, and all types."""
    scopes = []
    if category:
        scopes.append(Scope(resource_type, category))
    scopes.append(Scope(resource_type))
    if category:
        scopes.append(Scope("*", category))
    scopes.append(Scope("*"))
    return scopes
