"""Validation of transactions: structure, field syntax, EBTS profile rules, XML Schema.

Pure library (no I/O beyond reading its own rule tables, no Twisted).
"""

from .findings import ERROR, WARNING, Finding, Report, XmlLocation

__all__ = ["ERROR", "WARNING", "Finding", "Report", "XmlLocation"]
