"""Every splitfit CLI exits by one table (wire.exitcodes), checked on the installed scripts.

Two rows are exercised for each of the six tools, as real subprocesses of the console
scripts a user runs: a bad option (2, argparse's own) and an input file or model artifact
that is not there (3). Before the table the second row was 1 (server, power-log, demo) or
2 (device, training) depending on the tool.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.device_side import write_config
from support.tools import CONSOLE_SCRIPTS

from wire import exitcodes

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(tool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    script = BIN / tool
    if not script.exists():
        pytest.skip(f"{tool} is not installed in {BIN} (pip install -e .)")
    return subprocess.run(
        [str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _missing_input_args(tool: str, tmp: Path) -> list[str]:
    """Arguments that are well-formed but name an input that does not exist."""
    nowhere = tmp / "nowhere"
    if tool == "convert-head":
        return [str(nowhere / "head.pt"), "-o", str(tmp / "h.tflite"), "--calib-synthetic", "4"]
    if tool == "splitfit-device":
        return [
            "--config",
            str(write_config(tmp / "d.toml", nowhere / "head.tflite", 1)),
            "--check",
        ]
    if tool == "splitfit-server":
        cfg = tmp / "server.toml"
        cfg.write_text(f'[[models]]\npath = "{nowhere}"\n[metrics]\nenabled = false\n')
        return ["--config", str(cfg), "--check"]
    if tool == "power-log":
        return ["summary", str(nowhere / "power.csv")]
    if tool == "splitfit-train":
        return ["train", "--fashion-root", str(nowhere), "--out", str(tmp / "o"), "--no-progress"]
    if tool == "splitfit-bench":
        return ["demo", "--artifacts", str(nowhere), "--out", str(tmp / "out")]
    raise AssertionError(tool)


@pytest.mark.parametrize("tool", CONSOLE_SCRIPTS)
def test_missing_input_is_3_and_a_bad_option_is_2(tool: str, tmp_path: Path) -> None:
    proc = _run(tool, *_missing_input_args(tool, tmp_path), cwd=tmp_path)
    assert proc.returncode == exitcodes.BAD_INPUT, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    assert "nowhere" in proc.stderr  # the message names the missing path
    # the same well-formed call plus an option the tool does not have
    proc = _run(tool, *_missing_input_args(tool, tmp_path), "--no-such-option", cwd=tmp_path)
    assert proc.returncode == exitcodes.USAGE, (proc.returncode, proc.stderr[-2000:])
    assert "--no-such-option" in proc.stderr


def test_the_table_is_the_one_the_readme_states() -> None:
    """The README's exit-status table and wire.exitcodes must not drift apart."""
    readme = (ROOT / "README.md").read_text()
    for name in ("OK", "FAILURE", "USAGE", "BAD_INPUT", "INTERRUPTED"):
        code = getattr(exitcodes, name)
        assert f"| {code} | `{name}` |" in readme, name
