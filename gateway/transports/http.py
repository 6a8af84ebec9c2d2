"""Plain HTTP delivery (``http`` deliveries): POST a text payload, success on 2xx.

Used for notices to an LESC endpoint configured as ``[lesc] soap = URL``: the IAQ text is
posted as ``text/plain``; the dispatcher retries anything but a 2xx answer.
"""

from __future__ import annotations

from typing import Any, cast

from twisted.internet import defer, reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer


@implementer(IBodyProducer)
class _Bytes:
    def __init__(self, data: bytes):
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer):  # noqa: N802 - Twisted API
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self):  # noqa: N802
        pass

    def stopProducing(self):  # noqa: N802
        pass


class HTTPStatusError(Exception):
    pass


def http_sender(config, *, clock=None):
    agent = Agent(clock or reactor, connectTimeout=30)

    async def send(item, payload: bytes):
        response = await agent.request(
            b"POST",
            item.destination.encode(),
            Headers(
                {
                    b"content-type": [b"text/plain; charset=us-ascii"],
                    b"x-ebts-gateway-message": [item.message_id.encode()],
                }
            ),
            cast(Any, _Bytes(payload)),  # an IBodyProducer (zope interface)
        )
        await readBody(response)
        if not 200 <= response.code < 300:
            raise HTTPStatusError(f"HTTP {response.code}")

    return lambda item, payload: defer.ensureDeferred(send(item, payload))
