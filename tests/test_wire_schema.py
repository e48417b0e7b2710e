"""wire.schema: declared config tables (msgspec Structs) behind device.toml and server.toml.

Documents are parsed with tomllib, so the values have the types a real config file gives
(TOML's booleans, integers, floats, nan/inf, nested tables, arrays of tables). Each message is
compared whole: the promise is the dotted key, the rule and the value, in words.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest

from wire.schema import Meta, NonEmpty, OneOf, Required, SchemaError, Section, convert, field


class MyError(ValueError):
    """Stands in for device.config.ConfigError / server.config.ConfigError."""


class Server(Section):
    window: Annotated[int, Meta(ge=1)] = 4
    timeout: Annotated[float, Meta(gt=0, le=5)] = 1.0
    bits: Annotated[int, Meta(ge=1, le=8)] | None = None
    ratio: float = 0.5
    led: int | str | None = None
    on: bool = True
    name: Annotated[str, NonEmpty()] = "x"
    mode: Literal["drop", "buffer"] = "drop"
    device: Annotated[str, OneOf(("cpu", "cuda"))] = "cpu"
    params: dict[str, Any] = field(default_factory=dict)
    endpoints: str | Annotated[tuple[str, ...], Meta(min_length=1)] = ("tcp://a:1",)
    path: Path | None = None
    lo: float = 0.0
    hi: float = 1.0

    def check(self) -> None:
        if self.hi < self.lo:
            raise self.invalid("hi", "must be >= lo")


class Head(Section):
    name: str | None = None
    model: Annotated[Path | None, Required()] = None


@dataclass(frozen=True)
class Retry:  # a dataclass table (hardware.backoff.Backoff is one)
    initial: float = 0.5


class Doc(Section):
    server: Server = field(default_factory=Server)
    heads: tuple[Head, ...] = ()
    retry: Retry = field(default_factory=Retry)


def parse(text: str, base: Path | None = None) -> Doc:
    return convert(tomllib.loads(text), Doc, error=MyError, base=base)


def error_of(text: str) -> str:
    with pytest.raises(MyError) as info:
        parse(text)
    return str(info.value)


# --- unknown keys ------------------------------------------------------------------------------


def test_unknown_key_is_named_with_its_dotted_path_and_the_allowed_keys():
    assert error_of("[server]\nwindow = 3\nwindw = 4\n") == (
        "unknown key 'server.windw' (allowed: bits, device, endpoints, hi, led, lo, "
        "mode, name, on, params, path, ratio, timeout, window)"
    )
    assert error_of("[servr]\nx = 1\n") == ("unknown key 'servr' (allowed: heads, retry, server)")


def test_first_unknown_key_in_sorted_order_and_unknown_keys_in_arrays_and_dataclasses():
    assert error_of("[server]\nzz = 1\naa = 2\n").startswith("unknown key 'server.aa'")
    assert error_of("[[heads]]\nmodel = 'a'\n[[heads]]\nmodel = 'b'\nbatch = 4\n") == (
        "unknown key 'heads[1].batch' (allowed: model, name)"
    )
    # msgspec alone ignores unknown fields of a dataclass; the schema does not
    assert error_of("[retry]\ndelay = 1\n") == "unknown key 'retry.delay' (allowed: initial)"


def test_free_form_tables_take_any_key():
    assert parse("[server.params]\nanything = 1\n").server.params == {"anything": 1}


# --- types ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('window = "4"', "server.window must be an integer, got '4'"),
        ("window = 4.0", "server.window must be an integer, got 4.0"),
        ("window = true", "server.window must be an integer, got True"),
        ("ratio = false", "server.ratio must be a number, got False"),
        ('ratio = "1.5"', "server.ratio must be a number, got '1.5'"),
        ("on = 1", "server.on must be true or false, got 1"),
        ("name = 3", "server.name must be a string, got 3"),
        ("led = true", "server.led must be an integer or a string, got True"),
        ("params = 3", "server.params must be a table, got 3"),
        ("path = 3", "server.path must be a path string, got 3"),
        ("endpoints = []", "server.endpoints must be a non-empty array of strings, got []"),
        ('endpoints = ["a", 3]', "server.endpoints[1] must be a string, got 3"),
    ],
)
def test_wrong_type_names_the_key_the_expected_type_and_the_value(text, message):
    assert error_of(f"[server]\n{text}\n") == message


def test_bool_is_not_an_int_and_ints_are_accepted_as_floats():
    doc = parse("[server]\nled = 17\nratio = 2\n")
    assert doc.server.led == 17
    assert doc.server.ratio == 2.0 and isinstance(doc.server.ratio, float)
    assert parse('[server]\nled = "GPIO17"\n').server.led == "GPIO17"


def test_absent_keys_get_the_declared_defaults():
    doc = parse("")
    assert doc.server == Server() and doc.server.window == 4 and doc.server.bits is None
    assert doc.heads == () and doc.retry == Retry()


def test_a_single_string_is_accepted_where_an_array_of_strings_is():
    # the normalising is the section's check(); the schema accepts both shapes
    assert parse('[server]\nendpoints = ["a", "b"]\n').server.endpoints == ("a", "b")


def test_missing_required_key():
    assert error_of("[[heads]]\nname = 'a'\n") == "missing key 'heads[0].model'"

    with pytest.raises(MyError, match=r"^missing key 'n'$"):
        convert({}, Needs, error=MyError)


def test_default_error_class_is_a_value_error():
    with pytest.raises(SchemaError, match="window must be an integer") as info:
        convert({"window": "x"}, Server)
    assert isinstance(info.value, ValueError)


def test_long_values_are_cut_short_in_messages():
    message = error_of(f'[server]\nwindow = "{"x" * 500}"\n')
    assert message.startswith("server.window must be an integer, got 'xxx")
    assert message.endswith("...") and len(message) < 100


# --- ranges, choices, strings, paths -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("window = 0", "server.window must be >= 1, got 0"),
        ("bits = 9", "server.bits must be in [1, 8], got 9"),
        ("timeout = 0", "server.timeout must be > 0 and <= 5, got 0"),
        ("timeout = 7.0", "server.timeout must be > 0 and <= 5, got 7.0"),
        ("ratio = nan", "server.ratio must be a finite number, got nan"),
        ("ratio = -inf", "server.ratio must be a finite number, got -inf"),
        ("timeout = nan", "server.timeout must be a finite number, got nan"),
        ('mode = "keep"', "server.mode must be one of buffer, drop; got 'keep'"),
        ('device = "tpu"', "server.device must be one of cpu, cuda; got 'tpu'"),
        ('name = ""', "server.name must be a non-empty string, got ''"),
        ('path = ""', "server.path must be a non-empty path, got ''"),
        ("lo = 2\nhi = 1", "server.hi must be >= lo"),
    ],
)
def test_bad_values_name_the_key_and_the_rule(text, message):
    assert error_of(f"[server]\n{text}\n") == message


def test_values_on_the_bounds_are_accepted():
    doc = parse("[server]\nwindow = 1\nbits = 8\ntimeout = 5\nlo = 1\nhi = 1\n")
    assert (doc.server.window, doc.server.bits, doc.server.timeout) == (1, 8, 5.0)


LIVE_CHOICES = ["cpu"]


class Live(Section):
    device: Annotated[str, OneOf(LIVE_CHOICES)] = "cpu"


class Needs(Section):
    n: int


def test_choices_are_read_when_validating_so_a_registry_can_grow():
    choices = LIVE_CHOICES
    with pytest.raises(SchemaError, match="one of cpu; got 'npu'"):
        convert({"device": "npu"}, Live)
    choices.append("npu")
    assert convert({"device": "npu"}, Live).device == "npu"


def test_paths_resolve_against_the_base_directory(tmp_path):
    assert parse('[server]\npath = "models/h.tflite"\n', tmp_path).server.path == (
        tmp_path / "models/h.tflite"
    )
    assert parse('[server]\npath = "/abs/x"\n', tmp_path).server.path == Path("/abs/x")
    assert parse('[server]\npath = "~/y"\n', tmp_path).server.path == Path("~/y").expanduser()
    assert parse('[server]\npath = "rel"\n').server.path == Path("rel")  # no base: as written


# --- nesting, construction in code ---------------------------------------------------------------


def test_a_value_where_a_table_belongs():
    assert error_of("server = 3") == "'server' must be a table, got int"
    assert error_of("heads = [1]") == "'heads[0]' must be a table, got int"
    with pytest.raises(MyError, match=r"^the config must be a table, got list$"):
        convert([1, 2], Doc, error=MyError)


def test_where_prefixes_every_key():
    with pytest.raises(MyError, match=r"^camera\.params\.window must be >= 1, got 0$"):
        convert({"window": 0}, Server, error=MyError, where="camera.params")


def test_sections_built_in_code_are_checked_too_and_are_frozen():
    with pytest.raises(ValueError, match=r"^device: must be one of cpu, cuda; got 'tpu'$"):
        Server(device="tpu")
    s = Server(window=2)
    with pytest.raises(AttributeError):
        s.window = 3  # type: ignore[misc]
