"""Do the units' seccomp settings leave the real code working?

The emulation itself (the filter built from the unit file with systemd-analyze's groups,
installed in a child before it execs the real code) is ``support.sandbox``; these tests show
it bites, then run an int8 TFLite head and a torch tail under the units' rules.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from support.sandbox import DEVICE_UNIT, SERVER_UNIT, run_python, unit_settings
from support.unit_marks import needs_sandbox

pytestmark = needs_sandbox

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
    from support.device_side import cached_head

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
