"""Errors ``convert-head`` reports to the user.

Why a hierarchy: the CLI catches exactly one base class and prints its message as one line
with a non-zero exit code; the subclass says which kind of problem it is, so tests (and
scripts wrapping the converter) can tell a missing file from an unsupported op without
matching strings. Codes follow ``wire.exitcodes`` (1 failure, 3 bad input file); 4-9 are this
tool's documented refinements.
"""

from __future__ import annotations

from wire import exitcodes


class ConversionError(Exception):
    """Base class: the message is a complete, user-facing sentence."""

    exit_code = exitcodes.FAILURE


class SourceModelError(ConversionError):
    """The model file is missing, unreadable or not a TorchScript / torch.export program."""

    exit_code = exitcodes.BAD_INPUT


class InputSizeError(ConversionError):
    """The requested input size does not fit the model (or contradicts its manifest)."""

    exit_code = 4


class CalibrationError(ConversionError):
    """No usable calibration images (empty folder, nothing decodable, bad options)."""

    exit_code = 5


class UnsupportedOpError(ConversionError):
    """An operation cannot be expressed as a full-integer TFLite op.

    ``op`` names the operation, ``where`` the node / layer it came from (as precisely as the
    failing stage reports it) and ``stage`` the step of the route that rejected it.
    """

    exit_code = 6

    def __init__(self, op: str, where: str, stage: str, detail: str = "") -> None:
        self.op = op
        self.where = where
        self.stage = stage
        msg = f"unsupported op {op!r} at {where} ({stage})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class ConverterBackendError(ConversionError):
    """The ONNX -> TensorFlow -> TFLite toolchain failed for a reason we cannot classify."""

    exit_code = 7


class InvalidModelError(ConversionError):
    """The produced TFLite model is not usable: it crashed the interpreter or holds float."""

    exit_code = 8


class VerificationError(ConversionError):
    """The int8 model disagrees with the float PyTorch head more than allowed."""

    exit_code = 9
