"""Consent-gated FHIR patient records (issue #9)."""
