"""Durable storage: the message journal (SQLite), payloads and the routing log."""

from .journal import Journal, Message, Outbound

__all__ = ["Journal", "Message", "Outbound"]
