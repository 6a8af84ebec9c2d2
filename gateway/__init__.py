"""EBTS interchange gateway: ANSI/NIST-ITL codec, validation, imaging, matching and transports."""

__version__ = "0.9.0"
