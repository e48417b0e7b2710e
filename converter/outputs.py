"""Write head.tflite + head.json so a reader never sees a partial or mismatched pair.

Both files are complete under temporary names in the target folder before either is
renamed with ``os.replace`` (atomic on POSIX). On any failure before that point nothing at
the target paths changes.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from wire.atomicfile import default_file_mode
from wire.manifest import HeadManifest, save_manifest


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
        os.chmod(tmp_model, default_file_mode())
        os.chmod(tmp_manifest, default_file_mode())
        os.replace(tmp_model, out)
        os.replace(tmp_manifest, manifest_path)
    finally:
        Path(tmp_model).unlink(missing_ok=True)
        tmp_manifest.unlink(missing_ok=True)
