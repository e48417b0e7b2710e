"""Skip marks for the tests that run the systemd units' commands under their sandbox.

Apart from ``support.sandbox`` because that module is also the exec wrapper run inside the
seccomp filter, where importing pytest would be wasted start-up time.
"""

from __future__ import annotations

import pytest

from support.sandbox import filesystem_emulation_supported, sandbox_supported

#: The seccomp emulation needs x86_64/aarch64, systemd-analyze and the kernel's headers.
needs_sandbox = pytest.mark.skipif(
    sandbox_supported() is not None, reason=f"unit sandbox: {sandbox_supported()}"
)
#: ProtectSystem=/PrivateTmp= emulation needs root and unshare(1).
needs_unit_fs = pytest.mark.skipif(
    filesystem_emulation_supported() is not None, reason=str(filesystem_emulation_supported())
)
