"""Clinician accounts and console logins.

Passwords are stored as scrypt hashes (``hashlib.scrypt``, n=2**14, r=8, p=1, 16-byte salt),
compared in constant time. A login is a random 256-bit token in an ``HttpOnly`` cookie; the
database keeps only its SHA-256, so a leaked table does not log anyone in.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from healtrace.audit import append_entry
from healtrace.errors import AuthError, InputError
from healtrace.storage import Clinician, ClinicianLogin, Database
from healtrace.storage.models import utcnow

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
ROLES = ("nurse", "doctor", "pharmacist", "coordinator")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        candidate = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest) // 2,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(candidate.hex(), digest)


# A fixed hash to check unknown user names against, so a wrong name takes as long as a
# wrong password.
_DUMMY_HASH = hash_password(secrets.token_hex(8))


@dataclass(frozen=True, slots=True)
class ClinicianInfo:
    id: str
    tenant_id: str
    username: str
    display_name: str
    role: str

    @property
    def actor(self) -> str:
        return f"clinician:{self.id}"

    def to_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "tenant_id": self.tenant_id,
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
        }


def _info(row: Clinician) -> ClinicianInfo:
    return ClinicianInfo(
        id=row.id,
        tenant_id=row.tenant_id,
        username=row.username,
        display_name=row.display_name,
        role=row.role,
    )


class ClinicianStore:
    def __init__(self, db: Database, *, login_hours: float = 12.0) -> None:
        self.db = db
        self.login_hours = login_hours

    async def create(
        self,
        *,
        username: str,
        display_name: str,
        password: str,
        role: str = "nurse",
        tenant_id: str = "default",
    ) -> ClinicianInfo:
        username = username.strip().lower()
        if not username or len(username) > 100:
            raise InputError("user name must be 1-100 characters")
        if len(password) < 10:
            raise InputError("password must be at least 10 characters")
        if role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}")
        # Hash off the database thread: scrypt takes tens of milliseconds on purpose.
        hashed = hash_password(password)
        row = Clinician(
            id=secrets.token_hex(16),
            tenant_id=tenant_id,
            username=username,
            display_name=display_name.strip() or username,
            role=role,
            password_hash=hashed,
        )

        def add(s: Session) -> ClinicianInfo:
            s.add(row)
            s.flush()
            return _info(row)

        try:
            return await self.db.run(add)
        except IntegrityError as exc:
            raise InputError(f"clinician {username!r} already exists in {tenant_id}") from exc

    async def list(self, tenant_id: str | None = None) -> list[ClinicianInfo]:
        def query(s: Session) -> list[ClinicianInfo]:
            stmt = select(Clinician).where(Clinician.disabled_at.is_(None))
            if tenant_id is not None:
                stmt = stmt.where(Clinician.tenant_id == tenant_id)
            return [_info(r) for r in s.scalars(stmt.order_by(Clinician.username))]

        return await self.db.run(query)

    async def login(
        self, username: str, password: str, *, tenant_id: str = "default"
    ) -> tuple[ClinicianInfo, str]:
        """Check the password and open a login; returns the clinician and the cookie token.

        Failed attempts are audited (by user name only when it exists)."""
        username = username.strip().lower()
        row = await self.db.run(
            lambda s: s.scalar(
                select(Clinician).where(
                    Clinician.tenant_id == tenant_id,
                    Clinician.username == username,
                    Clinician.disabled_at.is_(None),
                )
            )
        )
        ok = check_password(password, row.password_hash if row else _DUMMY_HASH)
        if row is None or not ok:
            clinician_id = row.id if row is not None else None
            await self.db.run(
                lambda s: append_entry(
                    s,
                    tenant_id=tenant_id,
                    actor=f"clinician:{clinician_id}" if clinician_id else "anonymous",
                    action="clinician_login_failed",
                    details={"known_user": clinician_id is not None},
                )
            )
            raise AuthError("wrong user name or password", code="login_failed")
        info = _info(row)
        token = secrets.token_urlsafe(32)
        expires = utcnow() + timedelta(hours=self.login_hours)

        def open_login(s: Session) -> None:
            s.add(
                ClinicianLogin(
                    token_hash=_token_hash(token), clinician_id=info.id, expires_at=expires
                )
            )
            append_entry(
                s, tenant_id=info.tenant_id, actor=info.actor, action="clinician_login", details={}
            )

        await self.db.run(open_login)
        return info, token

    async def authenticate(self, token: str | None) -> ClinicianInfo:
        """The clinician a console cookie belongs to."""
        if not token or len(token) > 100:
            raise AuthError("not signed in", code="console_login_required")
        digest = _token_hash(token)

        def lookup(s: Session) -> ClinicianInfo | None:
            row = s.execute(
                select(Clinician, ClinicianLogin.expires_at)
                .join(ClinicianLogin, ClinicianLogin.clinician_id == Clinician.id)
                .where(ClinicianLogin.token_hash == digest, Clinician.disabled_at.is_(None))
            ).first()
            if row is None:
                return None
            clinician, expires_at = row
            if expires_at.tzinfo is None:
                expires_at = expires_at.replace(tzinfo=UTC)
            if expires_at <= datetime.now(UTC):
                return None
            return _info(clinician)

        info = await self.db.run(lookup)
        if info is None:
            raise AuthError("login expired or unknown", code="console_login_required")
        return info

    async def logout(self, token: str) -> None:
        digest = _token_hash(token)
        await self.db.run(
            lambda s: s.execute(delete(ClinicianLogin).where(ClinicianLogin.token_hash == digest))
        )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
