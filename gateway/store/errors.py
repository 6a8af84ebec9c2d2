"""What a store raises when it cannot read or commit (a transport answers "try again later")."""

from __future__ import annotations

import sqlite3

# The PostgreSQL store adds psycopg.Error here.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)
