"""Admin users with roles, kept in the journal's database (CJIS Security Policy 5.5, 5.6).

Roles: ``viewer`` (counts, states, routing; never a personal field), ``operator`` (also the
personal fields of a message in its audited view, payload and response downloads, reprocess),
``auditor`` (what a viewer sees, and the audit trail).  Passwords are at least
:data:`MIN_PASSWORD` characters and are stored as scrypt hashes (memory-hard, from hashlib):
``scrypt$N$r$p$<salt hex>$<hash hex>``.  A run of failed logins locks the account for a while
(the numbers come from ``[admin]``); the counter and the lock live here so they hold across
restarts.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

ROLES = ("viewer", "operator", "auditor")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# scrypt cost: 16 MiB and ~50 ms per check on one core (RFC 7914 section 2 parameters).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    locked_until REAL,
    created_at REAL NOT NULL,
    changed_at REAL NOT NULL
);
"""


class UserError(ValueError):
    """A refused user operation; the message says why (never the password)."""


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password: str
    disabled: bool
    failures: int
    locked_until: float | None
    created_at: float
    changed_at: float

    def locked(self, now: float) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def public(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        return {
            "name": self.name,
            "role": self.role,
            "disabled": self.disabled,
            "locked": self.locked(now),
            "failures": self.failures,
        }


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(stored: str | None, password: str) -> bool:
    """Constant-time check; with ``stored`` None a dummy hash is computed (same cost)."""
    if stored is None:
        hash_password(password)
        return False
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        mine = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(digest) // 2,
            maxmem=256 * 1024 * 1024,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(mine.hex(), digest)


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password has at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"a password has at most {MAX_PASSWORD} characters")


class Users:
    """The users table of a journal; every change is one commit."""

    def __init__(self, journal):
        self.journal = journal
        self.db = journal.db
        self.db.executescript(SCHEMA)

    def get(self, name: str) -> User | None:
        row = self.db.execute(
            "SELECT name, role, password, disabled, failures, locked_until, created_at, "
            "changed_at FROM users WHERE name = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        return User(row[0], row[1], row[2], bool(row[3]), *row[4:])

    def list(self) -> list[User]:
        names = [r[0] for r in self.db.execute("SELECT name FROM users ORDER BY name")]
        return [self._require(n) for n in names]  # each name was just read from the table

    def add(self, name: str, role: str, password: str) -> User:
        if not NAME_RE.match(name or ""):
            raise UserError("a user name is 1-64 letters, digits or . _ @ - (first alphanumeric)")
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        check_new_password(password)
        now = time.time()
        with self.journal.transaction():
            if self.get(name) is not None:
                raise UserError(f"user {name} exists")
            self.db.execute(
                "INSERT INTO users (name, role, password, created_at, changed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, role, hash_password(password), now, now),
            )
        return self._require(name)  # inserted just above

    def _require(self, name: str) -> User:
        user = self.get(name)
        if user is None:
            raise UserError(f"no user {name}")
        return user

    def disable(self, name: str) -> None:
        self._require(name)
        with self.journal.transaction():
            self.db.execute(
                "UPDATE users SET disabled = 1, changed_at = ? WHERE name = ?", (time.time(), name)
            )

    def set_password(self, name: str, password: str) -> None:
        """A new password; it also lifts a lockout and re-enables nothing else."""
        self._require(name)
        check_new_password(password)
        with self.journal.transaction():
            self.db.execute(
                "UPDATE users SET password = ?, failures = 0, locked_until = NULL, "
                "changed_at = ? WHERE name = ?",
                (hash_password(password), time.time(), name),
            )

    def login_failed(self, name: str, *, attempts: int, lock_seconds: float) -> bool:
        """Count a failure; True when this failure locks the account."""
        now = time.time()
        with self.journal.transaction():
            user = self.get(name)
            if user is None:
                return False
            failures = user.failures + 1
            locks = failures >= attempts and not user.locked(now)
            self.db.execute(
                "UPDATE users SET failures = ?, locked_until = ? WHERE name = ?",
                (
                    0 if locks else failures,
                    now + lock_seconds if locks else user.locked_until,
                    name,
                ),
            )
        return locks

    def login_succeeded(self, name: str) -> None:
        with self.journal.transaction():
            self.db.execute(
                "UPDATE users SET failures = 0, locked_until = NULL WHERE name = ?", (name,)
            )
