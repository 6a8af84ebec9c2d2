"""The intake's MIME scan bounds the header fields the email package parses (session 12)."""

from __future__ import annotations

import base64

import pytest

from gateway.config import Limits
from gateway.transports.smtp import IntakeRejected, read_message

FILE = b"an EBTS file" * 50


def _message(*, mime_version=b"1.0", top=b"", disposition=b"attachment; filename=a.eft"):
    data = base64.encodebytes(FILE).replace(b"\n", b"\r\n")
    return (
        b"MIME-Version: " + mime_version + b"\r\n"
        b"Content-Type: multipart/mixed; boundary=BB" + top + b"\r\n\r\n--BB\r\n"
        b"Content-Type: application/octet-stream\r\n"
        b"Content-Disposition: " + disposition + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + data + b"--BB--\r\n"
    )


@pytest.mark.parametrize(
    "shape",
    [
        {"top": b"".join(b";\r\n p%d=v" % i for i in range(5000))},  # 5,000 parameters: 2 s
        {"top": b" (c)" * 20000},  # comments: 36 s for 100,000
        {"mime_version": b"1.0" + b" (c)" * 20000},
        {"top": b'; x="' + b"a" * 100000 + b'"'},
        {"disposition": b"attachment" + b";" * 5000},
    ],
    ids=["parameters", "comments", "mime-version", "long value", "semicolons"],
)
def test_an_oversized_mime_field_is_refused_in_our_words(shape):
    with pytest.raises(IntakeRejected) as refused:
        read_message(_message(**shape), Limits())
    assert refused.value.code == 554
    assert "of more than 4096 bytes or 64 parameters and comments" in refused.value.text


def test_real_fields_pass():
    # an RFC 2231 file name continued over 30 parameters, a charset, a comment
    name = b"".join(b";\r\n filename*%d*=%s" % (i, b"%E2%82%AC" * 10) for i in range(30))
    found = read_message(
        _message(
            mime_version=b"1.0 (produced by a livescan)",
            top=b'; charset="us-ascii"',
            disposition=b"attachment" + name,
        ),
        Limits(),
    )
    [(filename, data)] = found
    assert data == FILE and filename and filename.startswith("\u20ac")
