"""Do the units' seccomp settings leave the real code working?

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
the user switch. Run as a script this module is an exec wrapper for other tests:
``python tests/test_systemd_sandbox.py UNIT CMD ARGS...``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import shutil
import socket
import struct
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
UNIT_DIR = HERE.parents[1] / "systemd"
DEVICE_UNIT = UNIT_DIR / "splitfit-device.service"
SERVER_UNIT = UNIT_DIR / "splitfit-server.service"
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


def unit_settings(unit: Path) -> dict[str, list[str]]:
    """``Key`` -> values in file order for the [Service] section (keys repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


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


# --- tests -----------------------------------------------------------------------------------

pytestmark = pytest.mark.skipif(sandbox_supported() is not None, reason=str(sandbox_supported()))

_PROBE = """
import ctypes, mmap, os, socket
def attempt(name, fn):
    try:
        fn()
        print(name, "ok")
    except OSError as exc:
        print(name, exc.errno)
attempt("wx-mmap", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC))
attempt("rw-mmap", lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE))
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
page = libc.mmap(None, 4096, 3, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
rc = libc.mprotect(ctypes.c_void_p(page), 4096, mmap.PROT_READ | mmap.PROT_EXEC)
print("mprotect-x", 0 if rc == 0 else ctypes.get_errno())
attempt("setaffinity", lambda: os.sched_setaffinity(0, os.sched_getaffinity(0)))
attempt("getaffinity", lambda: os.sched_getaffinity(0))
attempt("setgroups", lambda: os.setgroups(os.getgroups()))
attempt("af-packet", lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
attempt("af-inet6", lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close())
attempt("af-netlink", lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW).close())
attempt("af-unix", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).close())
"""


def _probe(unit: Path) -> dict[str, str]:
    proc = run_python(unit, _PROBE)
    assert proc.returncode == 0, proc.stderr
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines())


def test_device_filter_denies_what_the_unit_denies() -> None:
    """The emulation must bite, or the runs below prove nothing."""
    got = _probe(DEVICE_UNIT)
    eperm, noaf = str(errno.EPERM), str(errno.EAFNOSUPPORT)
    assert got == {
        "wx-mmap": eperm,  # MemoryDenyWriteExecute=yes
        "rw-mmap": "ok",
        "mprotect-x": eperm,
        "setaffinity": eperm,  # ~@resources
        "getaffinity": "ok",
        "setgroups": eperm,  # ~@privileged
        "af-packet": noaf,  # RestrictAddressFamilies=
        "af-inet6": "ok",
        "af-netlink": "ok",
        "af-unix": "ok",
    }


def test_server_filter_allows_jit_and_affinity() -> None:
    got = _probe(SERVER_UNIT)
    assert got["wx-mmap"] == "ok" and got["setaffinity"] == "ok"
    assert got["setgroups"] == str(errno.EPERM)
    assert got["af-netlink"] == "ok"  # libzmq binds need getifaddrs()
    assert got["af-packet"] == str(errno.EAFNOSUPPORT)


_RUN_HEAD = """
import sys
import ctypes  # its import builds a libffi closure: the classic MDWE casualty
import numpy as np
import PIL.Image, smbus2, zmq, zstandard, gpiozero  # the rest of the device extra
from ai_edge_litert.interpreter import Interpreter
cb = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int)(lambda v: v * 2)
assert cb(21) == 42
it = Interpreter(sys.argv[1], num_threads=2)
it.allocate_tensors()
i, o = it.get_input_details()[0], it.get_output_details()[0]
it.set_tensor(i["index"], np.full(i["shape"], 128, dtype=np.uint8))
it.invoke()
out = it.get_tensor(o["index"])
ctx = zmq.Context()
s = ctx.socket(zmq.DEALER)
s.connect("tcp://127.0.0.1:9")
s.close(0)
ctx.term()
print("head-ok", out.dtype, out.shape)
"""


@pytest.fixture(scope="module")
def int8_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The device tests' full-int8 TFLite head (real TFLiteConverter, built once a session)."""
    from test_device_support import cached_head

    return cached_head(tmp_path_factory.getbasetemp())[0]


def test_int8_tflite_with_xnnpack_runs_under_the_device_unit(int8_head: Path) -> None:
    """Decides ``MemoryDenyWriteExecute=yes`` (and ``~@resources``) in the device unit."""
    proc = run_python(DEVICE_UNIT, _RUN_HEAD, str(int8_head))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "head-ok int8 (1, " in proc.stdout
    assert "XNNPACK" in proc.stderr  # the delegate really was in play


_TORCH_CONV = """
import torch
with torch.no_grad():
    torch.nn.Conv2d(64, 64, 3, padding=1)(torch.randn(1, 64, 28, 28))
print("torch-ok")
"""


@pytest.mark.slow
def test_torch_tail_runs_under_the_server_unit() -> None:
    proc = run_python(SERVER_UNIT, _TORCH_CONV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "torch-ok" in proc.stdout


@pytest.mark.slow
def test_torch_needs_w_x_so_the_server_unit_allows_it() -> None:
    """Why splitfit-server.service does not set MemoryDenyWriteExecute: oneDNN JITs.

    Runs torch under the device unit's rules (which deny W+X). If a torch upgrade stops
    needing W+X memory this fails, and the server unit can be tightened.
    """
    proc = run_python(DEVICE_UNIT, _TORCH_CONV, timeout=300)
    assert proc.returncode != 0 and "torch-ok" not in proc.stdout
    assert "could not create a primitive" in proc.stderr, proc.stderr[-2000:]
    assert unit_settings(SERVER_UNIT).get("MemoryDenyWriteExecute", ["no"])[-1] == "no"


if __name__ == "__main__":
    install_filter(Path(sys.argv[1]))
    os.execvp(sys.argv[2], sys.argv[2:])
