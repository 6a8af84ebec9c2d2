"""EBTS interchange gateway: ANSI/NIST-ITL codec, validation, imaging, matching and transports."""

__version__ = "0.7.0"
