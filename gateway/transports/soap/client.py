"""A small blocking SOAP client: ``submitRequest`` of one transaction (no Twisted, no zeep).

The ``replay`` command uses it; the gateway's own pushes are :mod:`.sender`.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

from lxml import etree

from .envelope import (
    CONTENT_TYPE_11,
    CONTROL_NUMBER,
    MAX_MESSAGE_BYTES,
    SoapError,
    fault_of,
    parse_envelope,
    read_response,
    request_envelope,
)


def submit_soap(
    url: str, payload: bytes, *, xml: bool = False, timeout: float = 120.0, context=None
) -> str:
    """Submit one transaction by ``submitRequest``; returns the NGI control number.

    ``url`` is the service address (``http://HOST:PORT/ngi/NativeEBTSService`` for a
    traditional file, ``.../ngi/NGIUserService`` with ``xml=True`` for an XML package).
    Raises :class:`SoapFault` for a fault (``error_code`` INVALID_REQUEST, SERVICE_NOT_AVAILABLE
    or INTERNAL_PROCESSING_ERROR), :class:`SoapError` for anything else that is no answer,
    ValueError for a payload that cannot be sent, and OSError for network errors.
    ``context``: an ``ssl.SSLContext`` with the client certificate for an ``https`` URL.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url!r}")
    data = request_envelope(payload, xml=xml)
    request = urllib.request.Request(
        url,
        data=data,
        method="POST",
        headers={"Content-Type": CONTENT_TYPE_11, "SOAPAction": '"submitRequest"'},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            status, answer = response.status, response.read(MAX_MESSAGE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        status, answer = exc.code, exc.read(MAX_MESSAGE_BYTES + 1)
        exc.close()
        try:
            version, _, body = parse_envelope(answer)
        except SoapError:
            raise SoapError(f"HTTP {status} without a SOAP fault") from None
        fault = fault_of(body, version, status)
        if fault is not None:
            raise fault from None
        raise SoapError(f"HTTP {status} without a SOAP fault") from None
    element = read_response(answer, status)
    if etree.QName(element) != CONTROL_NUMBER or not (element.text or "").strip():
        raise SoapError(f"expected {CONTROL_NUMBER}, got {element.tag}")
    return element.text.strip()
