"""The one exception of the imaging package: :class:`ImagingError`, a value with a location.

Decoders of third-party libraries raise whatever they like (``PIL.UnidentifiedImageError``,
``OSError``, ``zlib.error``, ``imagecodecs`` errors ...).  Nothing of that kind leaves this package:
every failure is turned into an :class:`ImagingError` with a stable ``code``, the place in the
transaction (a :class:`gateway.ansinist.Location`) and the ERRT 2.060 MSG text (``hint``).
"""

from __future__ import annotations

from gateway.ansinist.errors import Location

# Stable codes (tests, routing rules and ERRT texts refer to them).
UNKNOWN_COMPRESSION = "IMG_UNKNOWN_COMPRESSION"
CODEC_UNAVAILABLE = "IMG_CODEC_UNAVAILABLE"
TOO_LARGE = "IMG_TOO_LARGE"
NO_HEADER = "IMG_NO_HEADER"
CORRUPT = "IMG_CORRUPT"
DECODE_FAILED = "IMG_DECODE_FAILED"
RAW_SIZE_MISMATCH = "IMG_RAW_SIZE_MISMATCH"
BAD_GEOMETRY = "IMG_BAD_GEOMETRY"
NO_DATA = "IMG_NO_DATA"
NOT_AN_IMAGE = "IMG_NOT_AN_IMAGE"
UNSUPPORTED = "IMG_UNSUPPORTED"


class ImagingError(ValueError):
    """An image cannot be decoded (or must not be: too large, unknown codec ...).

    ``code`` is a stable identifier such as ``"IMG_TOO_LARGE"``, ``message`` a human sentence,
    ``location`` where the image sits (record and tag when it came from a record) and ``hint``
    the text of the ERRT message the submitter would receive.
    """

    def __init__(
        self,
        code: str,
        message: str,
        location: Location | None = None,
        hint: str | None = None,
    ):
        self.code = code
        self.message = message
        self.location = location or Location()
        self.hint = hint or f"{self.location}: {message}"
        super().__init__(f"{self.location}: {message} [{code}]")

    def at(self, location: Location) -> ImagingError:
        """The same error placed at ``location`` (used when a record's decode fails)."""
        if self.location != Location():
            return self
        err = ImagingError(self.code, self.message, location)
        err.__cause__ = self.__cause__
        return err
