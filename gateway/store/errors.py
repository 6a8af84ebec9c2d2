"""What a store raises when it cannot read or commit (a transport answers "try again later")."""

from __future__ import annotations

from .db import database_errors

# sqlite3.Error, and psycopg.Error when psycopg is installed (the PostgreSQL store)
STORE_ERRORS: tuple[type[BaseException], ...] = database_errors()
