"""The shipped split model turned into what the daemons load, cached between runs.

``prepare_split`` is the one sequence the demo, e2e, e2e_adaptive and the daemon benchmark
all run: check the model folder, lay out the camera photos (labels from folder names) and the
calibration photos (never the evaluation ones), convert the head to int8 unless the cached
conversion already matches its source, and link the tail for ``splitfit-server``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness.errors import BenchError, MissingArtifacts

ROOT = Path(__file__).resolve().parents[2]
SPLIT_FILES = ("head.pt", "head.pt.json", "tail.pt", "tail.json")


@dataclass(frozen=True)
class DemoPaths:
    """Where a run's inputs and outputs live under one folder (the demo's layout)."""

    out: Path

    @property
    def camera(self) -> Path:
        return self.out / "camera"

    @property
    def calib(self) -> Path:
        return self.out / "calib"

    @property
    def head_dir(self) -> Path:
        return self.out / "head"

    @property
    def tail_dir(self) -> Path:
        return self.out / "tail"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics" / "frames.jsonl"

    @property
    def power_log(self) -> Path:
        return self.out / "power.csv"

    @property
    def summary(self) -> Path:
        return self.out / "run-summary.json"


@dataclass(frozen=True)
class PreparedSplit:
    """What :func:`prepare_split` made ready."""

    tflite: Path  # the int8 head (its head.json beside it)
    labels: list[str]  # class names, index = class id
    camera_photos: int
    calibration_photos: int


def show(path: Path) -> str:
    """A path as the user would type it: relative to the checkout when inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def safe_dirname(label: str) -> str | None:
    """A class name usable as a folder name that the folder camera reports back verbatim."""
    return None if ("/" in label or label.strip() != label or not label) else label


def prepare_camera_folder(dest: Path, labels: Sequence[str]) -> int:
    """foolbox's 20 labeled ImageNet photos as ``dest/<class name>/<file>`` (the folder
    camera turns the sub-folder into the ground-truth label the daemon scores against)."""
    from training.data.photos import shipped_photos

    photos = [p for p in shipped_photos(("foolbox",)) if p.label is not None]
    if not photos:
        raise BenchError("foolbox's ImageNet sample photos were not found (pip install foolbox)")
    n = 0
    for p in photos:
        name = safe_dirname(labels[int(p.label)])  # type: ignore[arg-type]
        if name is None:
            continue
        target = dest / name / p.path.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p.path, target)
        n += 1
    return n


def prepare_calibration_folder(dest: Path) -> int:
    """Calibration uses the *other* shipped photos (scikit-image, scikit-learn), never the
    evaluation photos, so the reported accuracy is not measured on calibration data."""
    from training.data.photos import shipped_photos

    photos = shipped_photos(("skimage", "sklearn"))
    if not photos:
        raise BenchError("no calibration photos found (scikit-image / scikit-learn not installed)")
    dest.mkdir(parents=True, exist_ok=True)
    for p in photos:
        target = dest / f"{p.source}-{p.path.name}"
        if not target.exists():
            shutil.copyfile(p.path, target)
    return len(photos)


def ensure_artifacts(artifacts: Path) -> None:
    """Refuse a split model folder without its four files, naming the missing ones."""
    missing = [n for n in SPLIT_FILES if not (artifacts / n).is_file()]
    if missing:
        raise MissingArtifacts(
            f"split model incomplete in {artifacts}: missing {', '.join(missing)}; "
            f"see {artifacts / 'README.md'} for the training command that produces it"
        )


CONVERT_KEY = "convert-key.json"  # beside head.json: what the cached conversion was made from


def conversion_inputs(artifacts: Path, calib: Path) -> dict[str, object]:
    """Everything that changes what ``convert-head`` writes, by content.

    Why not model_id and the ``head.pt`` hash alone: a re-export with another codec (or new
    entropy tables) keeps both, since model_id hashes the weights only, so the old cache
    would keep the old ``head.json`` codec. The codec lives in ``head.pt.json`` and
    ``tail.json``; the int8 grid depends on the calibration photos; the converter's own code
    decides the rest (its flags here are only these paths). By content, not by path: the
    same split in another folder is the same head.
    """
    from wire.manifest import sha256_file

    def digest(folder: Path) -> dict[str, str]:
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        return {p.relative_to(folder).as_posix(): sha256_file(p) for p in files}

    split = {n: sha256_file(artifacts / n) for n in SPLIT_FILES if (artifacts / n).is_file()}
    converter = {k: v for k, v in digest(ROOT / "converter").items() if k.endswith(".py")}
    return {
        "split": split,
        "calibration": digest(calib),
        "converter": converter,
    }


def convert_head(artifacts: Path, paths: DemoPaths, *, python: str = sys.executable) -> Path:
    """Run ``convert-head`` unless the cached head was converted from the same inputs
    (:func:`conversion_inputs`, recorded in ``convert-key.json`` once a conversion succeeded)."""
    from wire.atomicfile import write_json_atomic
    from wire.manifest import sha256_file

    tflite = paths.head_dir / "head.tflite"
    manifest = paths.head_dir / "head.json"
    stamp = paths.head_dir / CONVERT_KEY
    source = artifacts / "head.pt"
    flags = ["--calib", str(paths.calib), "--tail", str(artifacts / "tail.pt")]
    inputs = conversion_inputs(artifacts, paths.calib)
    if tflite.is_file() and manifest.is_file() and stamp.is_file():
        m = read_json(manifest)
        if read_json(stamp) == inputs and m.get("tflite_sha256") == sha256_file(tflite):
            print(f"  int8 head up to date: {show(tflite)}")
            return tflite
    paths.head_dir.mkdir(parents=True, exist_ok=True)
    stamp.unlink(missing_ok=True)  # a failed conversion must not leave an old key behind
    cmd = [python, "-m", "converter.cli", str(source), "-o", str(tflite), *flags]
    print("  $ convert-head " + " ".join(cmd[3:]))
    proc = subprocess.run(cmd, cwd=ROOT)
    if proc.returncode != 0:
        raise BenchError(f"convert-head failed with exit code {proc.returncode}")
    write_json_atomic(stamp, inputs, indent=1, sort_keys=True)
    return tflite


def prepare_tail(artifacts: Path, paths: DemoPaths) -> None:
    """The server loads a directory holding tail.pt + tail.json; link the shipped ones."""
    paths.tail_dir.mkdir(parents=True, exist_ok=True)
    for name in ("tail.pt", "tail.json"):
        target = paths.tail_dir / name
        if target.is_symlink() or target.exists():
            target.unlink()
        target.symlink_to((artifacts / name).resolve())


def split_labels(artifacts: Path) -> list[str]:
    """The split model's class names (its tail.json's, else ImageNet's)."""
    labels = read_json(artifacts / "tail.json").get("labels")
    if labels:
        return list(labels)
    from training.data.photos import imagenet_labels

    return list(imagenet_labels())


def prepare_split(
    artifacts: Path, paths: DemoPaths, *, python: str = sys.executable, tail: bool = True
) -> PreparedSplit:
    """Everything a run of the real daemons on the shipped photos needs, under ``paths``."""
    ensure_artifacts(artifacts)
    paths.out.mkdir(parents=True, exist_ok=True)
    labels = split_labels(artifacts)
    n_photos = prepare_camera_folder(paths.camera, labels)
    n_calib = prepare_calibration_folder(paths.calib)
    tflite = convert_head(artifacts, paths, python=python)
    if tail:
        prepare_tail(artifacts, paths)
    return PreparedSplit(tflite, labels, n_photos, n_calib)
