"""Encryption at rest: AES-256-GCM under data keys kept in a key file (0600).

CJIS Security Policy 5.10.1.2 asks that criminal justice information at rest be encrypted.
The journal stores payloads, responses, notices (IAQ/IAR text), search summaries and enrolled
templates as *blobs* sealed here:

    b"EGC1" | len(key id) (1 byte) | key id (ASCII) | nonce (12 bytes) | ciphertext + GCM tag

The associated data binds a blob to its row (``payload:<digest>``, ``summary:<message id>`` ...)
so a blob copied to another row does not open.  A blob without the magic is a plaintext blob
from a journal written before encryption (or by the benchmark with encryption off); it reads as
is and ``ebts-gateway keys rotate`` seals it.

The key file is JSON: ``{"version": 1, "current": "k2", "keys": {"k1": "<hex>", ...},
"digest_key": "<hex>"}``.  ``digest_key`` keys the content digests (HMAC-SHA256) that name
payloads, so a digest reveals nothing about a short text such as an IAQ.  It is written
atomically (temporary file, fsync, rename) with mode 0600.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"EGC1"
NONCE_BYTES = 12
KEY_BYTES = 32  # AES-256
MAX_KEY_FILE = 64 * 1024  # a key file is a few hundred bytes; refuse to parse anything large
TAG_BYTES = 16  # the GCM tag at the end of a sealed blob
CHUNK = 1 << 20  # the streaming seal/open work per call: the GIL is free between two calls


class KeyFileError(ValueError):
    """The key file is missing, unreadable, or does not open this journal's blobs.

    The message names the key file; ``ebts-gateway run`` prints it and exits 2.
    """

    def __init__(self, path: Path | str, message: str):
        self.path = Path(path)
        super().__init__(f"key file {self.path}: {message}")


class SealedBlobError(ValueError):
    """A blob that does not open: altered bytes, the wrong row, or a key not in the key file."""


def _hex_key(value, path: Path, name: str) -> bytes:
    try:
        key = bytes.fromhex(value)
    except (TypeError, ValueError):
        raise KeyFileError(path, f"{name} is not hexadecimal") from None
    if len(key) != KEY_BYTES:
        raise KeyFileError(path, f"{name} is not a {KEY_BYTES * 8}-bit key")
    return key


class Keyring:
    """The data keys of one key file: seal with the current key, open with any."""

    def __init__(self, path: Path, keys: dict[str, bytes], current: str, digest_key: bytes):
        self.path = Path(path)
        self.keys = dict(keys)
        self.current = current
        self.digest_key = digest_key
        self._aead = {kid: AESGCM(key) for kid, key in self.keys.items()}

    # -- file ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> Keyring:
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_KEY_FILE + 1)
        except FileNotFoundError:
            raise KeyFileError(path, "missing") from None
        except OSError as exc:
            raise KeyFileError(path, f"cannot read: {exc.strerror or exc}") from None
        if len(raw) > MAX_KEY_FILE:
            raise KeyFileError(path, "too large to be a key file")
        try:
            doc = json.loads(raw)
        except ValueError:
            raise KeyFileError(path, "not a key file (not JSON)") from None
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise KeyFileError(path, "not a version 1 key file")
        keys_doc = doc.get("keys")
        if not isinstance(keys_doc, dict) or not keys_doc:
            raise KeyFileError(path, "holds no keys")
        keys = {}
        for kid, value in keys_doc.items():
            if not (isinstance(kid, str) and kid.isascii() and kid.isalnum() and len(kid) <= 16):
                raise KeyFileError(path, f"bad key id {kid!r}")
            keys[kid] = _hex_key(value, path, f"key {kid}")
        current = doc.get("current")
        if current not in keys:
            raise KeyFileError(path, f"current key {current!r} is not in the file")
        digest_key = _hex_key(doc.get("digest_key"), path, "digest_key")
        return cls(path, keys, current, digest_key)

    @classmethod
    def create(cls, path: str | Path) -> Keyring:
        """A new key file with one key (refuses to overwrite an existing file)."""
        path = Path(path)
        if path.exists():
            raise KeyFileError(path, "already exists")
        ring = cls(path, {"k1": AESGCM.generate_key(256)}, "k1", secrets.token_bytes(KEY_BYTES))
        ring.save()
        return ring

    def save(self) -> None:
        doc = {
            "version": 1,
            "current": self.current,
            "keys": {kid: key.hex() for kid, key in self.keys.items()},
            "digest_key": self.digest_key.hex(),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        write_private(self.path, (json.dumps(doc, indent=1) + "\n").encode())
        self._aead = {kid: AESGCM(key) for kid, key in self.keys.items()}

    def add_key(self) -> str:
        """A new current key (the old ones stay to open existing blobs); saved."""
        n = 1 + max((int(k[1:]) for k in self.keys if k[1:].isdigit()), default=0)
        kid = f"k{n}"
        self.keys[kid] = AESGCM.generate_key(256)
        self.current = kid
        self.save()
        return kid

    def retire(self, kid: str) -> None:
        """Forget a key no blob uses any more; saved."""
        if kid == self.current:
            raise ValueError("the current key cannot be retired")
        self.keys.pop(kid, None)
        self.save()

    # -- blobs --------------------------------------------------------------------------------
    def digest(self, data: bytes) -> str:
        """The content name of a payload: HMAC-SHA256 under the digest key (hex)."""
        return hmac.new(self.digest_key, data, hashlib.sha256).hexdigest()

    def seal(self, data: bytes, aad: bytes) -> bytes:
        kid = self.current.encode()
        nonce = secrets.token_bytes(NONCE_BYTES)
        return (
            MAGIC
            + bytes([len(kid)])
            + kid
            + nonce
            + self._aead[self.current].encrypt(nonce, bytes(data), aad)
        )

    def seal_chunked(self, data, aad: bytes) -> bytearray:
        """The blob :meth:`seal` makes, byte for byte, sealed one :data:`CHUNK` at a time.

        For large payloads in a thread: one ``AESGCM.encrypt`` call holds the GIL for the whole
        payload (tens of ms for 45 MB), the streaming GCM of ``cryptography`` only per chunk,
        so the reactor thread runs between chunks.  Written into one buffer (no second copy).
        """
        kid = self.current.encode()
        nonce = secrets.token_bytes(NONCE_BYTES)
        head = MAGIC + bytes([len(kid)]) + kid + nonce
        view = memoryview(data)
        out = bytearray(len(head) + len(view) + TAG_BYTES + CHUNK)
        out[: len(head)] = head
        sealer = Cipher(algorithms.AES(self.keys[self.current]), modes.GCM(nonce)).encryptor()
        sealer.authenticate_additional_data(aad)
        pos = len(head)
        with memoryview(out) as target:
            for start in range(0, len(view), CHUNK):
                pos += sealer.update_into(view[start : start + CHUNK], target[pos:])
        sealer.finalize()
        out[pos : pos + TAG_BYTES] = sealer.tag
        del out[pos + TAG_BYTES :]
        return out

    def open_chunked(self, blob, aad: bytes) -> bytes:
        """:meth:`open`, one :data:`CHUNK` at a time (see :meth:`seal_chunked`).

        Nothing is returned before the tag is verified (``finalize``)."""
        view = memoryview(blob)
        if bytes(view[:4]) != MAGIC:
            return bytes(view)
        if len(view) < 5:
            raise SealedBlobError("truncated sealed blob")
        n = view[4]
        kid = bytes(view[5 : 5 + n]).decode("ascii", "replace")
        body = 5 + n + NONCE_BYTES
        if len(view) < body + TAG_BYTES:
            raise SealedBlobError("truncated sealed blob")
        key = self.keys.get(kid)
        if key is None:
            raise SealedBlobError(f"sealed with key {kid}, which the key file {self.path} lacks")
        nonce, tag = bytes(view[5 + n : body]), bytes(view[-TAG_BYTES:])
        opener = Cipher(algorithms.AES(key), modes.GCM(nonce, tag)).decryptor()
        opener.authenticate_additional_data(aad)
        out = bytearray(len(view) - body - TAG_BYTES + CHUNK)
        pos = 0
        with memoryview(out) as target:
            for start in range(body, len(view) - TAG_BYTES, CHUNK):
                end = min(start + CHUNK, len(view) - TAG_BYTES)
                pos += opener.update_into(view[start:end], target[pos:])
        try:
            opener.finalize()
        except InvalidTag:
            raise SealedBlobError(
                f"a blob sealed with key {kid} does not open (altered, or a wrong key file)"
            ) from None
        del out[pos:]
        return bytes(out)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        blob = bytes(blob)
        if not blob.startswith(MAGIC):
            return blob  # written before encryption at rest, or by a benchmark with it off
        kid, nonce, body = split(blob)
        aead = self._aead.get(kid)
        if aead is None:
            raise SealedBlobError(f"sealed with key {kid}, which the key file {self.path} lacks")
        try:
            return aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise SealedBlobError(
                f"a blob sealed with key {kid} does not open (altered, or a wrong key file)"
            ) from None


def key_id(blob: bytes | None) -> str | None:
    """The key id a blob was sealed with (None for plaintext)."""
    if blob is None or bytes(blob[:4]) != MAGIC:
        return None
    return split(bytes(blob))[0]


def split(blob: bytes) -> tuple[str, bytes, bytes]:
    if len(blob) < 5:
        raise SealedBlobError("truncated sealed blob")
    n = blob[4]
    kid = blob[5 : 5 + n].decode("ascii", "replace")
    nonce = blob[5 + n : 5 + n + NONCE_BYTES]
    if len(nonce) != NONCE_BYTES:
        raise SealedBlobError("truncated sealed blob")
    return kid, nonce, blob[5 + n + NONCE_BYTES :]


class Plain:
    """The no-encryption stand-in (benchmark switch only): writes plaintext, still opens sealed
    blobs when a key ring is at hand."""

    def __init__(self, ring: Keyring | None = None):
        self.ring = ring
        self.path = ring.path if ring else None
        self.current = None

    def digest(self, data: bytes) -> str:
        return self.ring.digest(data) if self.ring else hashlib.sha256(data).hexdigest()

    def seal(self, data: bytes, aad: bytes) -> bytes:
        return bytes(data)

    seal_chunked = seal

    def open_chunked(self, blob, aad: bytes) -> bytes:
        if self.ring is not None:
            return self.ring.open_chunked(blob, aad)
        return self.open(blob, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if self.ring is not None:
            return self.ring.open(blob, aad)
        if bytes(blob[:4]) == MAGIC:
            raise SealedBlobError("a sealed blob, and no key file was loaded")
        return bytes(blob)


# -- private files ----------------------------------------------------------------------------
def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (whatever the umask)."""
    path = Path(path)
    ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(str(path.parent), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def ensure_private_dir(path: Path, *, tighten: bool = False) -> None:
    """Create ``path`` (and missing parents) with mode 0700 whatever the umask.

    An existing directory is left as it is unless ``tighten`` (the gateway's own data
    directory, which it made on an earlier start, is tightened to 0700).
    """
    path = Path(path)
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for p in [*missing, *([path] if tighten else [])]:
        try:
            if p.stat().st_mode & 0o077:
                os.chmod(p, 0o700)
        except (PermissionError, FileNotFoundError):  # not ours to change
            pass


def make_private(*paths: Path) -> None:
    """chmod 0600 each existing file (the journal's database, WAL and shared-memory files)."""
    for p in paths:
        try:
            if os.stat(p).st_mode & 0o077:
                os.chmod(p, 0o600)
        except FileNotFoundError:
            continue
