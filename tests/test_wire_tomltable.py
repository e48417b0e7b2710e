"""wire.tomltable: the strict TOML table reader behind device.toml and server.toml.

Documents are parsed with tomllib, so the values have the types a real config file gives
(TOML's booleans, integers, floats, nan/inf, nested tables, arrays of tables).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from wire.tomltable import REQUIRED, TableError, TomlTable


class MyError(ValueError):
    """Stands in for device.config.ConfigError / server.config.ConfigError."""


def table(text: str) -> TomlTable:
    return TomlTable(tomllib.loads(text), error=MyError)


def error_of(fn) -> str:
    with pytest.raises(MyError) as info:
        fn()
    return str(info.value)


# --- unknown keys ------------------------------------------------------------------------------


def test_unknown_key_is_named_with_its_dotted_path_and_the_allowed_keys():
    root = table("[server]\nwindow = 3\nwindw = 4\n")
    t = root.table("server")
    assert t.integer("window", 1) == 3
    assert t.integer("timeout", 9) == 9
    assert error_of(t.finish) == "unknown config key 'server.windw' (allowed: timeout, window)"


def test_unknown_top_level_key_and_a_fully_read_table_finishes_quietly():
    root = table("[server]\nwindow = 3\n[servr]\nx = 1\n")
    server = root.table("server")
    server.integer("window", 1)
    server.finish()  # every key read: no error
    assert error_of(root.finish) == "unknown config key 'servr' (allowed: server)"


def test_first_unknown_key_in_sorted_order_is_reported():
    root = table("b = 1\na = 2\n")
    assert "'a'" in error_of(root.finish)


# --- types ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "read", "message"),
    [
        ('n = "4"', lambda t: t.integer("n", 1), "n must be an integer, got '4'"),
        ("n = 4.0", lambda t: t.integer("n", 1), "n must be an integer, got 4.0"),
        ("n = true", lambda t: t.integer("n", 1), "n must be an integer, got True"),
        ("x = false", lambda t: t.number("x", 1.0), "x must be a number, got False"),
        ('x = "1.5"', lambda t: t.number("x", 1.0), "x must be a number, got '1.5'"),
        ("b = 1", lambda t: t.boolean("b", True), "b must be true or false, got 1"),
        ("s = 3", lambda t: t.string("s", ""), "s must be a string, got 3"),
        (
            "v = true",
            lambda t: t.get("v", (int, str), None),
            "v must be an integer or a string, got True",
        ),
        ("p = 3", lambda t: t.get("p", dict, {}), "p must be a table, got 3"),
    ],
)
def test_wrong_type_names_the_key_the_expected_type_and_the_value(text, read, message):
    assert error_of(lambda: read(table(text))) == message


def test_bool_is_not_an_int_even_where_int_or_str_is_allowed():
    # Python's bool is an int; TOML's is not.
    assert "got True" in error_of(lambda: table("led = true").get("led", (int, str), None))
    assert table("led = 17").get("led", (int, str), None) == 17
    assert table('led = "GPIO17"').get("led", (int, str), None) == "GPIO17"


def test_integers_are_accepted_as_floats_and_converted():
    value = table("x = 2").number("x", 1.0)
    assert value == 2.0 and isinstance(value, float)


def test_absent_keys_give_the_default_unchecked():
    t = table("")
    assert t.integer("n", None, lo=1) is None
    assert t.number("x", -5.0, above=0) == -5.0  # defaults are the caller's to get right
    assert t.string("s", None, choices=("a",)) is None
    assert t.path("p", Path("/cfg")) is None
    assert t.strings("e", ("tcp://a:1",)) == ("tcp://a:1",)
    t.finish()  # reading marks a key as known even when absent


def test_missing_required_key():
    assert error_of(lambda: table("").strings("e", REQUIRED)) == "missing key 'e'"
    t = table("[[heads]]\nname = 'a'\n").tables("heads")[0]
    assert error_of(lambda: t.path("model", Path("/cfg"), REQUIRED)) == (
        "missing key 'heads[0].model'"
    )
    assert error_of(lambda: table("").integer("n", REQUIRED)) == "missing key 'n'"


def test_default_error_class_is_a_value_error():
    with pytest.raises(TableError, match="n must be an integer") as info:
        TomlTable({"n": "x"}).integer("n", 0)
    assert isinstance(info.value, ValueError)


def test_long_values_are_cut_short_in_messages():
    message = error_of(lambda: table(f'n = "{"x" * 500}"').integer("n", 0))
    assert message.startswith("n must be an integer, got 'xxx") and message.endswith("...")
    assert len(message) < 100


# --- ranges, choices, strings, paths -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "read", "message"),
    [
        ("n = 0", lambda t: t.integer("n", 1, lo=1), "n must be >= 1, got 0"),
        ("n = 9", lambda t: t.integer("n", 1, lo=1, hi=8), "n must be in [1, 8], got 9"),
        ("n = 9", lambda t: t.integer("n", 1, hi=8), "n must be <= 8, got 9"),
        ("x = 0", lambda t: t.number("x", 1.0, above=0), "x must be > 0, got 0.0"),
        ("x = -1.5", lambda t: t.number("x", 1.0, lo=0), "x must be >= 0, got -1.5"),
        ("x = 7.0", lambda t: t.number("x", 1.0, above=0, hi=5), "x must be > 0 and <= 5, got 7.0"),
        ("x = nan", lambda t: t.number("x", 1.0), "x must be a finite number, got nan"),
        ("x = -inf", lambda t: t.number("x", 1.0, lo=0), "x must be a finite number, got -inf"),
        (
            's = "tpu"',
            lambda t: t.string("s", "cpu", choices=("cpu", "cuda")),
            "s must be one of cpu, cuda; got 'tpu'",
        ),
        ('s = ""', lambda t: t.string("s", "x", nonempty=True), "s must be a non-empty string"),
        ('p = ""', lambda t: t.path("p", Path("/cfg")), "p must be a non-empty path"),
    ],
)
def test_bad_values_name_the_key_and_the_rule(text, read, message):
    assert error_of(lambda: read(table(text))).startswith(message)


def test_values_on_the_bounds_are_accepted():
    t = table("a = 1\nb = 8\nc = 0\nd = 0.001\n")
    assert t.integer("a", 0, lo=1, hi=8) == 1 and t.integer("b", 0, lo=1, hi=8) == 8
    assert t.number("c", 1.0, lo=0) == 0.0 and t.number("d", 1.0, above=0) == 0.001
    assert table('s = ""').string("s", "x") == ""  # empty strings are fine unless nonempty


def test_strings_accepts_one_string_or_a_non_empty_array_of_strings():
    assert table('e = "tcp://a:1"').strings("e", ()) == ("tcp://a:1",)
    assert table('e = ["tcp://a:1", "ipc:///s"]').strings("e", ()) == ("tcp://a:1", "ipc:///s")
    for bad in ("e = []", 'e = ["tcp://a:1", 3]', "e = 3", "e = true", "[e]\nx = 1"):
        assert "e must be a string or a non-empty array of strings" in error_of(
            lambda bad=bad: table(bad).strings("e", ())
        )


def test_paths_resolve_against_the_config_directory(tmp_path):
    t = table('a = "models/head.tflite"\nb = "/abs/x"\nc = "~/y"\n')
    assert t.path("a", tmp_path) == tmp_path / "models/head.tflite"
    assert t.path("b", tmp_path) == Path("/abs/x")
    assert t.path("c", tmp_path) == Path("~/y").expanduser()


# --- nesting -------------------------------------------------------------------------------------


def test_nested_tables_carry_the_dotted_path_into_errors():
    root = table("[power]\n[power.params]\nshunt = 'x'\n")
    params = root.table("power").table("params")
    assert params.where == "power.params"
    assert error_of(lambda: params.number("shunt", 0.1)) == (
        "power.params.shunt must be a number, got 'x'"
    )


def test_absent_sub_table_reads_as_empty():
    t = table("").table("metrics")
    assert t.boolean("enabled", True) is True
    t.finish()


def test_a_value_where_a_table_belongs():
    assert error_of(lambda: table("server = 3").table("server")) == (
        "'server' must be a table, got int"
    )
    assert error_of(lambda: TomlTable([1, 2], error=MyError)) == (
        "the config must be a table, got list"
    )


def test_arrays_of_tables_are_indexed_in_paths():
    root = table("[[models]]\npath = 'a'\n[[models]]\npath = 'b'\nbatch = 4\n")
    first, second = root.tables("models")
    assert first.string("path", None) == "a" and second.string("path", None) == "b"
    first.finish()
    assert error_of(second.finish) == "unknown config key 'models[1].batch' (allowed: path)"
    root.finish()


def test_arrays_of_tables_absent_single_and_wrong():
    assert table("").tables("heads") == []
    single = table("[heads]\nmodel = 'a'\n").tables("heads", single_ok=True)
    assert len(single) == 1 and single[0].where == "heads[0]"
    assert error_of(lambda: table("[heads]\nmodel = 'a'\n").tables("heads")) == (
        "'heads' must be an array of tables ([[heads]]), got dict"
    )
    assert error_of(lambda: table("heads = [1]").tables("heads")) == (
        "'heads[0]' must be a table, got int"
    )


def test_invalid_builds_errors_for_cross_key_rules():
    t = table("[camera]\nretry_min_s = 2.0\nretry_max_s = 1.0\n").table("camera")
    err = t.invalid("retry_max_s", "must be >= camera.retry_min_s")
    assert isinstance(err, MyError)
    assert str(err) == "camera.retry_max_s must be >= camera.retry_min_s"
