"""Settings of patients, consent and custodial keys (``HEALTRACE_RECORDS__*``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class RecordsConfig(BaseModel):
    """Patients, their consent grants and the custodial keys that sign for them."""

    #: Secret that encrypts custodial keys at rest (hex or any long random string).
    #: Empty: a random one is created in ``DATA_DIR/custody.key`` (mode 0600) on first use.
    custody_secret: SecretStr = SecretStr("")
    #: Grant length when the patient does not say, and the longest allowed.
    default_grant_days: int = Field(default=30, ge=1)
    max_grant_days: int = Field(default=365, ge=1)
    #: Most records of one type summarised for the model in one lookup.
    lookup_limit: int = Field(default=20, ge=1, le=200)
