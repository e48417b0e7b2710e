"""Write head.tflite + head.json so a reader never sees a partial or mismatched pair.

Both files are complete under temporary names in the target folder before either is
renamed with ``os.replace`` (atomic on POSIX). On any failure before that point nothing at
the target paths changes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from wire.manifest import HeadManifest, save_manifest


def _umask_mode() -> int:
    """The mode a normally created file gets (mkstemp would leave 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def install_outputs(tflite: Path, manifest: HeadManifest, out: Path, manifest_path: Path) -> None:
    """Both files are complete in temp names in the target folder before either is renamed."""
    fd, tmp_model = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp_manifest = manifest_path.with_name(f".{manifest_path.name}.{os.getpid()}.tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(tflite.read_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        save_manifest(manifest, tmp_manifest)
        os.chmod(tmp_model, _umask_mode())
        os.chmod(tmp_manifest, _umask_mode())
        os.replace(tmp_model, out)
        os.replace(tmp_manifest, manifest_path)
    finally:
        Path(tmp_model).unlink(missing_ok=True)
        tmp_manifest.unlink(missing_ok=True)
