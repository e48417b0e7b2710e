"""The units' sandbox re-created for tests: their seccomp settings and file-system view.

PID 1 is not systemd here, so no unit can be started. The parts of a unit that systemd
enforces with seccomp are re-created from the unit file itself and installed in a child
process before it runs the real code:

- ``SystemCallFilter=`` (allow list, then ``~`` removals) with ``SystemCallErrorNumber=``;
  the groups are expanded with ``systemd-analyze syscall-filter``, so they are systemd's own.
- ``RestrictAddressFamilies=``: ``socket()`` with another family fails with EAFNOSUPPORT.
- ``MemoryDenyWriteExecute=yes``: ``mmap`` asking for PROT_WRITE|PROT_EXEC,
  ``mprotect``/``pkey_mprotect`` asking for PROT_EXEC and ``shmat`` with SHM_EXEC fail with
  EPERM, the same rules as systemd's seccomp_memory_deny_write_execute().

Not re-created: the mount namespace (ProtectSystem=, PrivateTmp=...), the device cgroup and
the user switch. Run as a script this module is the exec wrapper ``sandboxed`` builds:
``python tests/support/sandbox.py UNIT CMD ARGS...``. The tests that the emulation bites
are in ``tests/test_systemd_sandbox.py``; the units' commands run under it in
``test_systemd_notify.py`` and ``test_systemd_run.py``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve()
UNIT_DIR = HERE.parents[2] / "systemd"
DEVICE_UNIT = UNIT_DIR / "splitfit-device.service"
SERVER_UNIT = UNIT_DIR / "splitfit-server.service"
#: Where the units expect the venv, and the one this checkout's tests run in instead.
SHIPPED_VENV_BIN = "/opt/splitfit/venv/bin"
VENV_BIN = Path(sys.executable).parent
ANALYZE = shutil.which("systemd-analyze")

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_HEADERS = {
    "x86_64": Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h"),
    "aarch64": Path("/usr/include/asm-generic/unistd.h"),
}
_PROT_WRITE, _PROT_EXEC, _SHM_EXEC = 0x2, 0x4, 0o100000
_LD_W_ABS, _JEQ_K, _AND_K, _RET_K = 0x20, 0x15, 0x54, 0x06
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_OFF_NR, _OFF_ARCH = 0, 4
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


def _arg(i: int) -> int:
    """offsetof(struct seccomp_data, args[i]), low 32 bits (little-endian)."""
    return 16 + 8 * i


# --- inputs: the unit file, systemd's syscall groups, the kernel's syscall numbers ----------


def directives(unit: Path) -> dict[str, list[str]]:
    """``Section.Key`` -> values in file order (systemd keys repeat, configparser can't)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{unit.name}: not KEY=VALUE: {raw!r}")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """``Key`` -> values in file order for the [Service] section (keys repeat)."""
    return {
        key.removeprefix("Service."): values
        for key, values in directives(unit).items()
        if key.startswith("Service.")
    }


@cache
def syscall_groups() -> dict[str, list[str]]:
    """``@group`` -> members (syscalls or nested groups), from systemd-analyze itself."""
    assert ANALYZE is not None
    text = subprocess.run(
        [ANALYZE, "syscall-filter", "--no-pager"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.split()[0], [])
        elif current is not None and line.startswith("    ") and not line.strip().startswith("#"):
            current.append(line.strip())
        elif not line.strip():
            current = None
    return groups


def expand(names: list[str]) -> set[str]:
    groups = syscall_groups()
    out: set[str] = set()
    for name in names:
        if name.startswith("@"):
            out |= expand(groups[name])
        else:
            out.add(name)
    return out


@cache
def syscall_numbers() -> dict[str, int]:
    """Name -> number for this machine, from the kernel UAPI header."""
    text = _HEADERS[platform.machine()].read_text()
    raw = dict(re.findall(r"#define\s+__NR(?:3264)?_(\w+)\s+(\w+)", text))
    out: dict[str, int] = {}
    for name, value in raw.items():
        for _ in range(3):  # aarch64: __NR_mmap -> __NR3264_mmap -> 222
            if value.isdigit():
                out[name] = int(value)
                break
            value = raw.get(re.sub(r"^__NR(?:3264)?_", "", value), "")
    return out


def sandbox_supported() -> str | None:
    """None when the filter can be built here, else why not."""
    if sys.platform != "linux" or platform.machine() not in _AUDIT_ARCH:
        return f"no seccomp rules for {sys.platform}/{platform.machine()} in this test"
    if ANALYZE is None:
        return "systemd-analyze is not installed (it defines the syscall groups)"
    if not _HEADERS[platform.machine()].exists():
        return f"{_HEADERS[platform.machine()]} missing (linux-libc-dev) for syscall numbers"
    return None


# --- the filter ------------------------------------------------------------------------------


def build_filter(unit: Path) -> list[tuple[int, int, int, int]]:
    """BPF (code, jt, jf, k) instructions enforcing ``unit``'s seccomp settings.

    Layout: foreign arch -> EPERM; then one self-contained block per argument-checked
    syscall (mmap/mprotect/pkey_mprotect/shmat for MDWE, socket for address families), each
    ending in its own RETs so no jump is longer than a block; then ``nr == X -> ALLOW`` for
    every allowed syscall; else the unit's errno.
    """
    s = unit_settings(unit)
    nums = syscall_numbers()
    errno_name = s.get("SystemCallErrorNumber", ["EPERM"])[-1]
    deny = _RET_ERRNO | getattr(errno, errno_name)

    allowed: set[str] | None = None
    for value in s.get("SystemCallFilter", []):
        invert = value.startswith("~")
        names = expand(value.lstrip("~").split())
        if allowed is None:
            allowed = set(expand(["@default"])) | names if not invert else None
            assert allowed is not None, "deny-list-first filters are not used by our units"
        elif invert:
            allowed -= names
        else:
            allowed |= names
    assert allowed is not None, f"{unit.name} has no SystemCallFilter="

    prog: list[tuple[int, int, int, int]] = [
        (_LD_W_ABS, 0, 0, _OFF_ARCH),
        (_JEQ_K, 1, 0, _AUDIT_ARCH[platform.machine()]),
        (_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        (_LD_W_ABS, 0, 0, _OFF_NR),
    ]

    def block(nr_name: str, body: list[tuple[int, int, int, int]]) -> None:
        if nr_name in nums:
            prog.append((_JEQ_K, 0, len(body), nums[nr_name]))
            prog.extend(body)

    if s.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        eperm = _RET_ERRNO | errno.EPERM
        for name, argi, mask in (
            ("mmap", 2, _PROT_WRITE | _PROT_EXEC),
            ("mprotect", 2, _PROT_EXEC),
            ("pkey_mprotect", 2, _PROT_EXEC),
            ("shmat", 2, _SHM_EXEC),
        ):
            ok = _RET_ALLOW if name in allowed else deny
            block(
                name,
                [
                    (_LD_W_ABS, 0, 0, _arg(argi)),
                    (_AND_K, 0, 0, mask),
                    (_JEQ_K, 0, 1, mask),
                    (_RET_K, 0, 0, eperm),
                    (_RET_K, 0, 0, ok),
                ],
            )
    families = " ".join(s.get("RestrictAddressFamilies", [])).split()
    if families and "socket" in allowed:
        body: list[tuple[int, int, int, int]] = [(_LD_W_ABS, 0, 0, _arg(0))]
        for fam in families:
            body += [(_JEQ_K, 0, 1, int(getattr(socket, fam))), (_RET_K, 0, 0, _RET_ALLOW)]
        body.append((_RET_K, 0, 0, _RET_ERRNO | errno.EAFNOSUPPORT))
        block("socket", body)
    for name in sorted(allowed):
        if name in nums:
            prog += [(_JEQ_K, 0, 1, nums[name]), (_RET_K, 0, 0, _RET_ALLOW)]
    prog.append((_RET_K, 0, 0, deny))
    assert len(prog) <= 4096, "BPF program too long"
    return prog


def install_filter(unit: Path) -> None:
    """Install ``unit``'s filter in this process; inherited by children and across exec."""
    prog = build_filter(unit)
    raw = b"".join(struct.pack("HBBI", *ins) for ins in prog)
    buf = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))

    fprog = SockFprog(len(prog), ctypes.addressof(buf))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def sandboxed(unit: Path, *cmd: str) -> list[str]:
    """argv that runs ``cmd`` under ``unit``'s seccomp settings."""
    return [sys.executable, str(HERE), str(unit), *cmd]


def run_python(unit: Path, code: str, *args: str, timeout: float = 120):
    return subprocess.run(
        sandboxed(unit, sys.executable, "-c", code, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# The file-system half of a unit, in a private mount namespace (the host's mounts are not
# touched): ProtectSystem=strict (all read-only), PrivateTmp=yes (fresh /tmp, /var/tmp),
# ProtectHome=yes (empty, inaccessible /root and /home) and the unit's State/Logs/Cache/
# RuntimeDirectory= as the only writable places: FS appears as /media and its subdirectories
# named in WRITABLE stand in for /var/lib/splitfit, /var/log/splitfit, ... The working
# directory is /media/state (WorkingDirectory=). The seccomp filter comes after the mounts,
# as in systemd, whose filter would forbid mount(2) itself.
PROTECT_SYSTEM = """
fs=$1 homes=$2 writable=$3 tmps=$4
shift 4
mount --bind "$fs" /media
for home in $homes; do mount -t tmpfs -o mode=000,ro tmpfs "$home"; done
for tmp in $tmps; do mount -t tmpfs -o mode=1777 tmpfs "$tmp"; done
for rw in $writable; do mount --bind "/media/$rw" "/media/$rw"; done
mount -o remount,bind,ro /
mount -o remount,bind,ro /media
cd /media/state
exec "$@"
"""


def filesystem_emulation_supported() -> str | None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "emulating ProtectSystem= needs root and unshare(1) for a private mount namespace"
    return None


def hidden_homes() -> list[str]:
    """ProtectHome=yes hides /root and /home, but not one holding this test's interpreter.

    (On a board the venv is made from /usr/bin/python3; install.sh warns otherwise. Here the
    interpreter may be a pyenv build under /root, which the service must be able to exec.)
    """
    python = Path(os.path.realpath(sys.executable))
    return [h for h in ("/root", "/home") if not python.is_relative_to(h)]


def private_tmps() -> list[str]:
    """PrivateTmp=yes gives the unit a fresh /tmp and /var/tmp, but the checkout and its venv
    must stay visible to the emulated service: CI may clone into /tmp. (An installed unit's
    venv lives under /opt, never in /tmp.)"""
    here = [Path(os.path.realpath(sys.executable)), Path(__file__).resolve()]
    return [d for d in ("/tmp", "/var/tmp") if not any(p.is_relative_to(d) for p in here)]


def with_unit_filesystem(
    fs: Path, writable: tuple[str, ...], cmd: list[str], homes: list[str] | None = None
) -> list[str]:
    """``cmd`` run inside the unit's file-system view (see PROTECT_SYSTEM); ``homes``
    defaults to :func:`hidden_homes`."""
    for sub in writable:
        (fs / sub).mkdir(parents=True, exist_ok=True)
    unshare = shutil.which("unshare") or "unshare"
    return [
        unshare,
        "-m",
        "--propagation",
        "private",
        "sh",
        "-ec",
        PROTECT_SYSTEM,
        "sh",
        str(fs),
        " ".join(hidden_homes() if homes is None else homes),
        " ".join(writable),
        " ".join(private_tmps()),
        *cmd,
    ]


# --- a unit's command line, environment and time spans, as systemd reads them ----------------


def unit_env(unit: Path) -> dict[str, str]:
    """The unit's ``Environment=`` assignments (shell-style quoting, later ones win)."""
    env: dict[str, str] = {}
    for value in unit_settings(unit).get("Environment", []):
        for assignment in shlex.split(value):
            key, _, val = assignment.partition("=")
            env[key] = val
    return env


def exec_start(unit: Path, env: dict[str, str] | None = None) -> list[str]:
    """ExecStart= split the way systemd does: ``$VAR`` becomes several words, ``${VAR}`` one;
    the shipped venv path is pointed at this checkout's venv, which exists."""
    words = []
    for word in shlex.split(unit_settings(unit)["ExecStart"][-1]):
        if word.startswith("$") and not word.startswith("${"):
            words += (env or {})[word[1:]].split()
        else:
            words.append(word)
    assert words[0].startswith(SHIPPED_VENV_BIN + "/"), words[0]
    return [str(VENV_BIN / Path(words[0]).name), *words[1:]]


def time_span(value: str) -> float:
    """A systemd time span as our units write them: '30', '30s', '2min' -> seconds."""
    value = value.strip()
    if value.endswith("min"):
        return float(value[:-3]) * 60
    return float(value.rstrip("s"))


if __name__ == "__main__":
    install_filter(Path(sys.argv[1]))
    os.execvp(sys.argv[2], sys.argv[2:])
