"""Relational storage: SQLite by default, PostgreSQL by URL; Alembic migrations."""

from healtrace.storage.database import Database
from healtrace.storage.models import ApiKey, Base, ChatSession, Message

__all__ = ["ApiKey", "Base", "ChatSession", "Database", "Message"]
