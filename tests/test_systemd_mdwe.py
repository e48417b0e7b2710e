"""Does the board's inference stack survive systemd's ``MemoryDenyWriteExecute=yes``?

systemd implements the option as a seccomp filter: ``mmap`` asking for PROT_WRITE|PROT_EXEC,
``mprotect``/``pkey_mprotect`` asking for PROT_EXEC and ``shmat`` with SHM_EXEC fail with
EPERM. Anything that JITs (or a libffi without static trampolines building ctypes callbacks)
breaks under it. PID 1 is not systemd here, so we cannot start a unit; this module installs
the same filter itself and then runs the real code (the TFLite interpreter with its default
XNNPACK delegate). Run as a script it is an exec wrapper for other tests:
``python tests/test_systemd_mdwe.py CMD ARGS...`` runs CMD with the filter installed.
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()

# machine -> (AUDIT_ARCH_*, {syscall nr: (arg2 mask, value that is denied)})
_PROT_WRITE, _PROT_EXEC, _SHM_EXEC = 0x2, 0x4, 0o100000
_WX = _PROT_WRITE | _PROT_EXEC
_RULES = {
    # mmap, mprotect, pkey_mprotect, shmat
    "x86_64": (
        0xC000003E,
        {
            9: (_WX, _WX),
            10: (_PROT_EXEC, _PROT_EXEC),
            329: (_PROT_EXEC, _PROT_EXEC),
            30: (_SHM_EXEC, _SHM_EXEC),
        },
    ),
    "aarch64": (
        0xC00000B7,
        {
            222: (_WX, _WX),
            226: (_PROT_EXEC, _PROT_EXEC),
            288: (_PROT_EXEC, _PROT_EXEC),
            196: (_SHM_EXEC, _SHM_EXEC),
        },
    ),
}
_LD_W_ABS, _JEQ_K, _AND_K, _RET_K, _JA = 0x20, 0x15, 0x54, 0x06, 0x05
_RET_ALLOW, _RET_EPERM = 0x7FFF0000, 0x00050000 | 1
_OFF_NR, _OFF_ARCH, _OFF_ARG2 = 0, 4, 16 + 2 * 8  # struct seccomp_data; low word (little-endian)
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2


def mdwe_supported() -> bool:
    return sys.platform == "linux" and platform.machine() in _RULES


def bpf_program() -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k) instructions.

    Check the arch, load the syscall number, then one 4-instruction block per syscall:
    ``nr == X ? ((arg2 & mask) == deny ? EPERM : ALLOW) : next block``. Jump offsets are
    relative to the next instruction, so they are patched once the two RETs are placed.
    """
    audit_arch, rules = _RULES[platform.machine()]
    prog: list[list[int]] = [[_LD_W_ABS, 0, 0, _OFF_ARCH], [_JEQ_K, 0, -1, audit_arch]]
    prog.append([_LD_W_ABS, 0, 0, _OFF_NR])
    arg_checks = []
    for nr, (mask, deny) in rules.items():
        prog.append([_JEQ_K, 0, 3, nr])
        prog.append([_LD_W_ABS, 0, 0, _OFF_ARG2])
        prog.append([_AND_K, 0, 0, mask])
        arg_checks.append(len(prog))
        prog.append([_JEQ_K, -2, -1, deny])
    allow = len(prog)
    prog.append([_RET_K, 0, 0, _RET_ALLOW])
    prog.append([_RET_K, 0, 0, _RET_EPERM])
    for idx, ins in enumerate(prog):
        for slot in (1, 2):
            if ins[slot] < 0:  # -1 = ALLOW, -2 = EPERM
                ins[slot] = allow + (ins[slot] == -2) - idx - 1
    return [tuple(ins) for ins in prog]  # type: ignore[misc]


def install_filter() -> None:
    """Install the filter in this process (inherited by children and across exec)."""
    prog = bpf_program()
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


def run_under_mdwe(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` in a fresh interpreter that has the filter installed first."""
    return subprocess.run(
        [sys.executable, str(HERE), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


pytestmark = pytest.mark.skipif(
    not mdwe_supported(), reason=f"no seccomp MDWE rules for {platform.machine()} in this test"
)

_PROBE_FILTER = """
import ctypes, mmap
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("wx-mmap:allowed")
except OSError as exc:
    print("wx-mmap:", exc.errno)
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
page = libc.mmap(None, 4096, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
rc = libc.mprotect(ctypes.c_void_p(page), 4096, mmap.PROT_READ | mmap.PROT_EXEC)
print("mprotect-x:", rc, ctypes.get_errno())
mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE)
print("rw-mmap:ok")
"""


def test_filter_denies_what_systemd_denies() -> None:
    """The emulation must bite, or the TFLite test below proves nothing."""
    proc = run_under_mdwe(_PROBE_FILTER)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert "wx-mmap: 1" in lines  # EPERM
    assert "mprotect-x: -1 1" in lines
    assert "rw-mmap:ok" in lines


_MAKE_MODEL = """
import sys
import numpy as np
import tensorflow as tf
inp = tf.keras.Input((32, 32, 3))
x = tf.keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
x = tf.keras.layers.DepthwiseConv2D(3, padding="same")(x)
x = tf.keras.layers.Conv2D(8, 1)(x)
conv = tf.lite.TFLiteConverter.from_keras_model(tf.keras.Model(inp, x))
conv.optimizations = [tf.lite.Optimize.DEFAULT]
rng = np.random.default_rng(0)
conv.representative_dataset = lambda: ([rng.random((1, 32, 32, 3), dtype=np.float32)] for _ in range(8))
conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
conv.inference_input_type = tf.uint8
conv.inference_output_type = tf.int8
open(sys.argv[1], "wb").write(conv.convert())
"""

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
print("head-ok", out.dtype, out.shape)
"""


def test_int8_tflite_with_xnnpack_runs_under_mdwe(tmp_path: Path) -> None:
    """Decides ``MemoryDenyWriteExecute=yes`` in splitfit-device.service: no JIT needed."""
    model = tmp_path / "head.tflite"
    made = subprocess.run(
        [sys.executable, "-c", _MAKE_MODEL, str(model)], capture_output=True, text=True, timeout=300
    )
    assert made.returncode == 0, made.stderr[-2000:]
    proc = subprocess.run(
        [sys.executable, str(HERE), sys.executable, "-c", _RUN_HEAD, str(model)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "head-ok int8 (1, 32, 32, 8)" in proc.stdout
    assert "XNNPACK" in proc.stderr  # the delegate really was in play


_TORCH_CONV = """
import torch
with torch.no_grad():
    torch.nn.Conv2d(64, 64, 3, padding=1)(torch.randn(1, 64, 28, 28))
print("torch-ok")
"""


def test_torch_needs_w_x_so_the_server_unit_allows_it() -> None:
    """Why splitfit-server.service does not set MemoryDenyWriteExecute: oneDNN JITs.

    If a torch upgrade stops needing W+X memory this fails, and the server unit can
    be tightened.
    """
    proc = run_under_mdwe(_TORCH_CONV, timeout=300)
    assert proc.returncode != 0 and "torch-ok" not in proc.stdout
    assert "could not create a primitive" in proc.stderr, proc.stderr[-2000:]
    server = (HERE.parents[1] / "systemd" / "splitfit-server.service").read_text()
    assert "\nMemoryDenyWriteExecute=yes" not in server
    device = (HERE.parents[1] / "systemd" / "splitfit-device.service").read_text()
    assert "\nMemoryDenyWriteExecute=yes\n" in device


if __name__ == "__main__":
    install_filter()
    os.execvp(sys.argv[1], sys.argv[1:])
