"""A cheap streaming check of a MIME message's structure before the ``email`` package sees it.

The ``email`` parser recurses once per level of nesting and keeps every part in memory; a
message nested 5,000 deep ends in Python's own "maximum recursion depth exceeded".  This scan
reads the raw message line by line (from a file, without holding it), follows the multipart
boundaries and enclosed messages (``message/rfc822``) with an explicit stack, and refuses more
than ``max_depth`` levels or ``max_parts`` parts with :class:`MimeLimitError`, whose text names
the limit in our words (RFC 2046 5.1.1 boundaries; 5.2.1 enclosed messages).
"""

from __future__ import annotations

import binascii
import re

_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))', re.I)
_MAX_HEADER = 64 * 1024  # bytes of one header field kept while scanning
# The MIME fields the email package parses with its structured-header parser, whose cost grows
# with the square of a field's parameters, semicolons and comments (200,000 parameters in one
# 2.5 MB Content-Type held the parser thread, and with it every other submission, for hours).
# A real one holds a type, a boundary or a file name and a charset: these bounds leave room for
# RFC 2231 continuations of a long file name.
_PARSED_FIELDS = (b"content-type:", b"content-disposition:", b"content-transfer-encoding:")
_PARSED_FIELDS_ALSO = b"mime-version:"
MAX_MIME_FIELD = 4096  # bytes of one of those fields, unfolded
MAX_MIME_TOKENS = 64  # ";" and "(" in one of those fields (parameters and comments)


class _Body:
    """The decoded bytes of one attachment, built line by line (base64 in blocks)."""

    def __init__(self, encoding: bytes):
        self.encoding = encoding
        self.out = bytearray()
        self.pending = bytearray()  # base64 text not yet decoded / raw lines of other encodings

    def feed(self, raw: bytes) -> None:
        if self.encoding == b"base64":
            self.pending += raw.strip()
            if len(self.pending) >= 1 << 20:
                cut = len(self.pending) - len(self.pending) % 4
                self.out += binascii.a2b_base64(bytes(self.pending[:cut]))
                del self.pending[:cut]
        else:
            self.pending += raw

    def finish(self) -> bytes:
        if self.encoding == b"base64":
            self.out += binascii.a2b_base64(bytes(self.pending))
        else:
            body = bytes(self.pending)
            body = body[:-2] if body.endswith(b"\r\n") else body  # the CRLF of the delimiter
            if self.encoding == b"quoted-printable":
                body = binascii.a2b_qp(body)
            self.out += body
        self.pending = bytearray()
        return bytes(self.out)


class MimeLimitError(ValueError):
    """The message's structure is beyond a limit: ``what`` is ``depth``, ``parts``,
    ``attachments`` or ``header``."""

    def __init__(self, what: str, text: str):
        super().__init__(text)
        self.what = what
        self.text = text


def check_structure(
    stream,
    *,
    max_depth: int,
    max_parts: int,
    max_attachments: int | None = None,
    collect: bool = False,
) -> dict:
    """Scan ``stream`` (binary, readable by lines); return depth, parts and attachments.

    Raises :class:`MimeLimitError` at the first level past ``max_depth``, part past
    ``max_parts`` or attachment past ``max_attachments`` (a leaf part that is an attachment by
    disposition or an ``application/*`` part, as the intake counts them).  With ``collect``
    the decoded bytes of those attachments are returned too (``"files"``), each held once in
    memory: the way large messages are read without the ``email`` package's copies.
    """
    stack: list[bytes | None] = []  # boundaries of open multiparts; None for an enclosed message
    in_headers = True
    content_type = b""
    disposition = b""
    current = b""  # the header field being read (folded lines joined)
    encoding = b""
    parts = attachments = 0
    deepest = 0
    body: _Body | None = None  # the attachment being collected
    files: list[bytes] = []

    def header_done() -> None:
        nonlocal content_type, disposition, encoding, current
        name = current[:26].lower()
        if name.startswith(_PARSED_FIELDS) or name.startswith(_PARSED_FIELDS_ALSO):
            tokens = current.count(b";") + current.count(b"(")
            if len(current) > MAX_MIME_FIELD or tokens > MAX_MIME_TOKENS:
                field = current.split(b":", 1)[0].decode("ascii", "replace")[:40]
                raise MimeLimitError(
                    "header",
                    f"a MIME header field {field} of more than {MAX_MIME_FIELD} bytes or "
                    f"{MAX_MIME_TOKENS} parameters and comments",
                )
        if name.startswith(b"content-type:"):
            content_type = current[13:].strip()
        elif name.startswith(b"content-disposition:"):
            disposition = current[20:].strip().lower()
        elif name.startswith(b"content-transfer-encoding:"):
            encoding = current[26:].strip().lower()
        current = b""

    def body_done() -> None:
        nonlocal body
        if body is not None:
            data = body.finish()
            if data:
                files.append(data)
            body = None

    for raw in iter(stream.readline, b""):
        line = raw.rstrip(b"\r\n")
        if in_headers:
            if line[:1] in (b" ", b"\t") and current:
                if len(current) < _MAX_HEADER:
                    current += b" " + line.strip()
                continue
            header_done()
            if line:
                current = line[:_MAX_HEADER]
                continue
            # end of a header block: what does it open?
            value, content_type = content_type, b""
            kind = value.split(b";", 1)[0].strip().lower()
            attached, disposition = disposition.startswith(b"attachment"), b""
            part_encoding, encoding = encoding, b""
            in_headers = False
            if kind.startswith(b"multipart/"):
                found = _BOUNDARY.search(value)
                if found is None:
                    continue  # no boundary: the email package reads it as one part
                stack.append(found.group(1) or found.group(2))
            elif kind.startswith(b"message/"):
                stack.append(None)  # the email package parses the body as a message
                in_headers = True  # whose own headers follow
            else:
                if attached or kind.startswith(b"application/"):
                    attachments += 1
                    if max_attachments is not None and attachments > max_attachments:
                        raise MimeLimitError(
                            "attachments",
                            f"more than {max_attachments} attachments: at most "
                            f"{max_attachments} per message (max_attachments)",
                        )
                    if collect:
                        body = _Body(part_encoding)
                continue
            if len(stack) > deepest:
                deepest = len(stack)
                if deepest > max_depth:
                    raise MimeLimitError(
                        "depth",
                        f"MIME parts nested deeper than {max_depth} levels (mime_max_depth)",
                    )
            continue
        if not line.startswith(b"--") or not stack:
            if body is not None:
                body.feed(raw)
            continue
        text = line.rstrip(b" \t")
        closed = False
        for level in range(len(stack) - 1, -1, -1):
            boundary = stack[level]
            if boundary is None:
                continue
            if text == b"--" + boundary:
                closed = True
                body_done()
                del stack[level + 1 :]
                parts += 1
                if parts > max_parts:
                    raise MimeLimitError(
                        "parts", f"more than {max_parts} MIME parts (mime_max_parts)"
                    )
                in_headers = True
                break
            if text == b"--" + boundary + b"--":
                closed = True
                body_done()
                del stack[level:]
                break
        if not closed and body is not None:
            body.feed(raw)
    body_done()
    return {"depth": deepest, "parts": parts, "attachments": attachments, "files": files}
