"""systemd/install.sh: dry run changes nothing, a staged install is complete and idempotent.

The script runs for real here, into a temporary ``--root`` tree: files, modes, rendered
units and the ``systemctl --root enable`` symlinks are the real ones; only the steps that act
on this machine (useradd, chown, udevadm, daemon-reload) are skipped, and the script says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "systemd" / "install.sh"
VENV = Path(sys.executable).parent.parent  # this checkout's venv: its bin/ has the entry points
ANALYZE = shutil.which("systemd-analyze")
needs_systemctl = pytest.mark.skipif(
    shutil.which("systemctl") is None, reason="systemctl is not installed"
)


def run(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = ["bash", str(SCRIPT), *args]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def snapshot(root: Path) -> dict[str, str]:
    """Path -> mode + content hash (or symlink target) for everything under ``root``."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[rel] = f"dir {p.stat().st_mode & 0o7777:o}"
        else:
            out[rel] = f"{p.stat().st_mode & 0o7777:o} {hashlib.sha256(p.read_bytes()).hexdigest()}"
    return out


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    ex = tmp_path / "examples"
    ex.mkdir()
    (ex / "device.toml").write_text('[device]\nname = "from-examples"\n')
    (ex / "server.toml").write_text("# server example\n")
    return ex


@pytest.fixture
def stage(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


ALL = "device,server,power-log"


def test_dry_run_into_stage_changes_nothing(stage: Path, examples: Path) -> None:
    proc = run("--dry-run", "--role", ALL, "--root", str(stage), "--examples", str(examples))
    assert proc.returncode == 0, proc.stderr
    assert list(stage.iterdir()) == []
    out = proc.stdout.splitlines()
    for line in (
        "would create directory /etc/splitfit (mode 0750)",
        "would install /etc/splitfit/device.toml (mode 0640)",
        "would install /etc/splitfit/server.toml (mode 0640)",
        "would install /etc/splitfit/power-log.env (mode 0640)",
        "would install /etc/systemd/system/splitfit-device.service (mode 0644)",
        "would install /etc/systemd/system/splitfit-server.service (mode 0644)",
        "would install /etc/systemd/system/splitfit-power-log.service (mode 0644)",
        "would install /etc/udev/rules.d/60-splitfit-devices.rules (mode 0644)",
        "would enable splitfit-device.service (systemctl --root)",
        "skip (--root): ensure system user splitfit exists (useradd --system)",
        "skip (--root): ensure system group gpio exists (groupadd --system gpio)",
        "dry run done: nothing was changed",
    ):
        assert line in out, f"missing {line!r} in:\n{proc.stdout}"


@pytest.mark.skipif(os.geteuid() != 0, reason="checks the live-system dry run as root")
def test_dry_run_on_the_live_system_changes_nothing(examples: Path) -> None:
    watched = [Path("/etc/splitfit"), Path("/etc/systemd/system"), Path("/etc/udev/rules.d")]
    before = {str(p): sorted(os.listdir(p)) if p.is_dir() else None for p in watched}
    passwd = Path("/etc/passwd").read_bytes()
    group = Path("/etc/group").read_bytes()
    proc = run("--dry-run", "--role", ALL, "--examples", str(examples))
    assert proc.returncode == 0, proc.stderr
    after = {str(p): sorted(os.listdir(p)) if p.is_dir() else None for p in watched}
    assert after == before
    assert Path("/etc/passwd").read_bytes() == passwd
    assert Path("/etc/group").read_bytes() == group
    reload = (
        "would reload systemd (daemon-reload)"
        if Path("/run/systemd/system").is_dir()  # sd_booted()
        else "skip (systemd is not running here): daemon-reload; the units load at the next boot"
    )
    assert reload in proc.stdout.splitlines()
    assert "would enable splitfit-server.service" in proc.stdout.splitlines()
    has_user = subprocess.run(["getent", "passwd", "splitfit"], capture_output=True).returncode == 0
    expect = "user splitfit exists" if has_user else "would create system user splitfit"
    assert any(line.startswith(expect) for line in proc.stdout.splitlines())


@needs_systemctl
def test_staged_install_is_complete_and_idempotent(stage: Path, examples: Path) -> None:
    args = ("--role", ALL, "--root", str(stage), "--venv", str(VENV), "--examples", str(examples))
    first = run(*args)
    assert first.returncode == 0, first.stderr
    assert "install /etc/systemd/system/splitfit-device.service (mode 0644)" in first.stdout
    tree = snapshot(stage)
    wants = "etc/systemd/system/multi-user.target.wants"
    for unit in ("splitfit-device", "splitfit-server", "splitfit-power-log"):
        assert tree[f"{wants}/{unit}.service"] == f"-> /etc/systemd/system/{unit}.service"
        assert tree[f"etc/systemd/system/{unit}.service"].startswith("644 ")
    assert tree["etc/splitfit"] == "dir 750"
    assert tree["etc/splitfit/device.toml"].startswith("640 ")
    assert (stage / "etc/splitfit/device.toml").read_text() == (
        examples / "device.toml"
    ).read_text()
    assert not list(stage.rglob(".splitfit-install.*"))  # no temp files left behind

    second = run(*args)
    assert second.returncode == 0, second.stderr
    assert snapshot(stage) == tree
    changed = [
        line
        for line in second.stdout.splitlines()
        if line.startswith(("install ", "update ", "create ", "enable "))
    ]
    assert changed == [], second.stdout
    assert "unchanged /etc/systemd/system/splitfit-device.service" in second.stdout
    assert "keep /etc/splitfit/device.toml (exists, not overwritten)" in second.stdout
    assert "splitfit-device.service already enabled" in second.stdout


@needs_systemctl
def test_reinstall_keeps_the_config_and_repairs_the_unit(stage: Path, examples: Path) -> None:
    args = ("--root", str(stage), "--examples", str(examples))
    assert run(*args).returncode == 0
    config = stage / "etc/splitfit/device.toml"
    unit = stage / "etc/systemd/system/splitfit-device.service"
    config.write_text("# edited by the admin\n")
    pristine = unit.read_text()
    unit.write_text(pristine.replace("WatchdogSec=30", "WatchdogSec=0"))
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    assert config.read_text() == "# edited by the admin\n"
    assert unit.read_text() == pristine
    assert "update /etc/systemd/system/splitfit-device.service (mode 0644)" in proc.stdout


@needs_systemctl
def test_prefix_and_venv_end_up_in_exec_start(stage: Path, examples: Path) -> None:
    base = ("--role", "device,power-log", "--examples", str(examples), "--no-enable")
    assert run(*base, "--root", str(stage), "--prefix", "/srv/sf").returncode == 0
    unit = (stage / "etc/systemd/system/splitfit-device.service").read_text()
    assert "ExecStart=/srv/sf/venv/bin/splitfit-device --config /etc/splitfit/device.toml" in unit
    assert "/opt/splitfit" not in unit
    assert not (stage / "etc/systemd/system/multi-user.target.wants").exists()
    other = stage.parent / "other"
    other.mkdir()
    assert run(*base, "--root", str(other), "--venv", "/usr/local/sf-env/").returncode == 0
    plog = (other / "etc/systemd/system/splitfit-power-log.service").read_text()
    assert "ExecStart=/usr/local/sf-env/bin/power-log record $POWER_LOG_ARGS" in plog


@needs_systemctl
@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_installed_units_verify(stage: Path, examples: Path) -> None:
    """Rendered with --venv pointing at a real venv, the installed units pass verify as-is."""
    proc = run(
        "--role", ALL, "--root", str(stage), "--venv", str(VENV), "--examples", str(examples)
    )
    assert proc.returncode == 0, proc.stderr
    for unit in sorted((stage / "etc/systemd/system").glob("splitfit-*.service")):
        res = subprocess.run(
            [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60
        )
        assert res.returncode == 0, res.stderr
        assert unit.name not in res.stderr, res.stderr


@needs_systemctl
def test_jetson_drop_in(stage: Path, examples: Path) -> None:
    assert run("--root", str(stage), "--examples", str(examples), "--jetson").returncode == 0
    drop_in = stage / "etc/systemd/system/splitfit-device.service.d/jetson.conf"
    assert drop_in.read_text() == (ROOT / "systemd/jetson.conf").read_text()
    if ANALYZE is not None:  # verify reads the drop-in from UNIT.d/ next to the unit
        drop_in.write_text(drop_in.read_text() + "DevicePolicyy=auto\n")
        res = subprocess.run(
            [ANALYZE, "verify", str(stage / "etc/systemd/system/splitfit-device.service")],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "jetson.conf" in res.stderr and "DevicePolicyy" in res.stderr


def test_real_examples_are_installed_when_present(stage: Path) -> None:
    example = ROOT / "examples" / "device.toml"
    if not example.exists():
        pytest.skip("examples/device.toml not written yet (owned by the device daemon)")
    proc = run("--dry-run", "--root", str(stage))
    assert "would install /etc/splitfit/device.toml (mode 0640)" in proc.stdout
    assert run("--root", str(stage), "--no-enable").returncode == 0
    assert (stage / "etc/splitfit/device.toml").read_bytes() == example.read_bytes()


def test_missing_example_is_a_warning_not_a_failure(stage: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-examples"
    empty.mkdir()
    proc = run("--root", str(stage), "--examples", str(empty), "--no-enable")
    assert proc.returncode == 0, proc.stderr
    assert (
        f"warning: no example config {empty}/device.toml; write /etc/splitfit/device.toml "
        "before starting splitfit-device.service"
    ) in proc.stdout
    assert not (stage / "etc/splitfit/device.toml").exists()


@pytest.mark.skipif(shutil.which("setpriv") is None and os.geteuid() == 0, reason="no setpriv")
def test_refuses_without_root(tmp_path: Path) -> None:
    proc = run("--role", "device", user="65534" if os.geteuid() == 0 else None)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "must run as root" in lines[0], proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--role", "camera"), "unknown role 'camera'"),
        (("--venv", "relative/venv"), "--venv must be an absolute path"),
        (("--prefix", "/opt/with space"), "--prefix must be an absolute path"),
        (("--root", "/nonexistent/splitfit-root"), "is not a directory"),
        (("--frobnicate",), "unknown option '--frobnicate'"),
        (("--venv",), "--venv needs a value"),
    ],
)
def test_bad_options_fail_with_one_line(args: tuple[str, ...], message: str) -> None:
    proc = run("--dry-run", *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


@pytest.mark.parametrize(
    ("interpreter", "warned"),
    [("/root/.pyenv/versions/3.11.7/bin/python3.11", True), ("/usr/bin/python3", False)],
)
def test_warns_when_protect_home_would_hide_the_interpreter(
    tmp_path: Path, examples: Path, interpreter: str, warned: bool
) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(interpreter)
    proc = run("--dry-run", "--venv", str(venv), "--examples", str(examples))
    assert proc.returncode == 0, proc.stderr
    assert ("ProtectHome=yes hides" in proc.stdout) is warned, proc.stdout


_OVERLAY_RUN = r"""
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/etc-up,workdir=$1/etc-work" /etc
mount -t overlay overlay -o "lowerdir=/var,upperdir=$1/var-up,workdir=$1/var-work" /var
shift
bash "$@"
echo "=== second run"
bash "$@"
echo "=== unreadable config"
chown root:root /etc/splitfit/device.toml
chmod 0600 /etc/splitfit/device.toml
bash "$@"
echo "=== state"
chown root:splitfit /etc/splitfit/device.toml
chmod 0640 /etc/splitfit/device.toml
getent passwd splitfit
stat -c "%n %U:%G %a" /etc/splitfit /etc/splitfit/device.toml /etc/systemd/system/splitfit-device.service
readlink /etc/systemd/system/multi-user.target.wants/splitfit-device.service
"""


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="the real (non --root) install runs as root in a private mount namespace",
)
def test_real_install_with_useradd_and_chown_on_an_overlay(tmp_path: Path, examples: Path) -> None:
    """No --root: real groupadd/useradd/chown/systemctl enable, against an overlay of /etc
    and /var in a private mount namespace, so this machine's own files stay untouched."""
    for d in ("etc-up", "etc-work", "var-up", "var-work"):
        (tmp_path / d).mkdir()
    passwd_before = Path("/etc/passwd").read_bytes()
    args = [str(SCRIPT), "--role", "device", "--venv", str(VENV), "--examples", str(examples)]
    proc = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "bash",
            "-ec",
            _OVERLAY_RUN,
            "sh",
            str(tmp_path),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if "unknown filesystem type" in proc.stderr:
        pytest.skip("no overlayfs here")
    assert proc.returncode == 0, proc.stderr
    assert Path("/etc/passwd").read_bytes() == passwd_before
    first, rest = proc.stdout.split("=== second run\n")
    second, rest = rest.split("=== unreadable config\n")
    third, state = rest.split("=== state\n")
    assert (
        "warning: /etc/splitfit/device.toml is root:root mode 600: the splitfit user cannot read"
        " it (chown root:splitfit /etc/splitfit/device.toml; chmod 0640 /etc/splitfit/device.toml)"
    ) in third.splitlines()
    assert "cannot read" not in second
    new_groups = [g for g in ("splitfit", "i2c", "video", "gpio") if not _host_has_group(g)]
    for group in new_groups:
        assert f"create system group {group}" in first.splitlines()
    assert "create system user splitfit (home /var/lib/splitfit, no login)" in first
    assert "chown root:splitfit /etc/splitfit" in first
    changes = [
        ln
        for ln in second.splitlines()
        if ln.startswith(("create ", "install ", "update ", "chown ", "enable "))
    ]
    assert changes == [], second
    assert "user splitfit exists" in second and "splitfit-device.service already enabled" in second
    user, *stats, link = state.strip().splitlines()
    fields = user.split(":")
    assert fields[0] == "splitfit" and fields[5:] == ["/var/lib/splitfit", "/usr/sbin/nologin"]
    assert stats == [
        "/etc/splitfit root:splitfit 750",
        "/etc/splitfit/device.toml root:splitfit 640",
        "/etc/systemd/system/splitfit-device.service root:root 644",
    ]
    assert link == "/etc/systemd/system/splitfit-device.service"


def _host_has_group(name: str) -> bool:
    return subprocess.run(["getent", "group", name], capture_output=True).returncode == 0
