"""Exception types for everything that crosses the link.

Why a hierarchy: the server and the device both run loops that must never die on a bad
message. They catch exactly one base class (``ProtocolError`` for framing, ``CodecError``
for payloads) and turn it into a typed ERROR reply or a counted drop; the subclass says
*why*, so the counter can be labelled and the reply code chosen without string matching.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """A byte string that is not a valid message. The only thing ``decode_message`` raises."""


class TruncatedMessage(ProtocolError):
    """Fewer bytes (or multipart parts) than the header promises."""


class BadVersion(ProtocolError):
    """The envelope's protocol version is not the one this side speaks.

    ``version`` holds the received number so a server can answer VERSION_MISMATCH.
    """

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version


class UnknownMessageType(ProtocolError):
    """The type byte names no message this version defines."""


class LengthMismatch(ProtocolError):
    """A declared length disagrees with the buffer actually received (too many bytes/parts)."""


class PayloadTooLarge(ProtocolError):
    """The declared payload exceeds the negotiated maximum; rejected before any allocation."""


class MalformedBody(ProtocolError):
    """The header is fine but the body is not: bad JSON, wrong field type, unknown key, ..."""


class FieldTooLong(MalformedBody):
    """A string (or collection) field over its documented bound, e.g. HELLO's device_name.

    Why its own type: every field a server accepts may end up in its log, so the bounds are
    what keeps a hostile peer from turning a 64 KiB body into 64 KiB of log per message.
    ``field``, ``length`` and ``limit`` say which bound was hit; the message never echoes
    the value.
    """

    def __init__(self, message: str, field: str, length: int, limit: int) -> None:
        super().__init__(message)
        self.field = field
        self.length = length
        self.limit = limit


class CodecError(ValueError):
    """Bad codec name or parameters, or a payload that does not decode to the agreed tensor."""


class ManifestError(ValueError):
    """A head/tail manifest that is missing, not JSON, or has a bad/unknown key (named)."""
