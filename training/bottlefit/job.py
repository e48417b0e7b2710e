"""One BottleFit run's description (model, cut, codec, data, schedule) and its cache keys.

Why apart: the job is what the CLI and the benchmarks build from flags, and its hashes name
the teacher cache and the stage checkpoints.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from training.bottlefit.config import BottleFitConfig
from training.compressor import CodecConfig

# foolbox's labelled ImageNet samples are evaluation only, never training inputs.
TRAIN_SOURCES = ("skimage", "sklearn")


# Held-out crops always come from the 11 colour photos, whatever the job trains on, so
# agreement numbers stay comparable across jobs with different training sources.
HELDOUT_SOURCES = ("skimage", "sklearn")


@dataclass(frozen=True)
class BottleFitJob:
    """One BottleFit run on an ImageNet backbone with shipped photos (CLI/benchmark input)."""

    model: str = "efficientnet_lite0"
    after: str = "stage3"
    channels: int = 8
    stride: int = 2
    codec: CodecConfig = field(default_factory=lambda: CodecConfig("jpeg", 8, {"quality": 60}))
    train_crops: int = 64  # per training photo
    mixed_crops: int = 0  # per training photo: mixup/CutMix blends of two photos' crops
    dead_leaves: int = 0  # procedural dead-leaves images (training.data.dead_leaves), in total
    sources: tuple[str, ...] = TRAIN_SOURCES  # shipped photo sets the crops come from
    heldout_crops: int = 8  # per training photo, another seed
    input_size: int = 224
    threads: int = 2
    progress: bool = True
    fit: BottleFitConfig = field(default_factory=BottleFitConfig)
    # folder of the ImageNet sample ("" = ../shared/data/imagenet-sample or the env var);
    # read only when ``sources`` names "imagenet-sample"
    imagenet_root: str = ""
    # git-ignored folder for the teacher cache and the per-epoch checkpoints ("" = none):
    # a rerun of the same job reuses the cache and continues at the next epoch
    run_dir: str = ""
    # cached split-point features in float16: early cuts have big maps (24x56x56 after
    # stage2); halves the memory, the MSE targets lose nothing that matters at 1-2-bit codes
    half_features: bool = False
    # read only when ``sources`` names "debian-corpus": augmented inputs per corpus photo,
    # and the corpus folder ("" = $SPLITFIT_PHOTOS or vendor/photos)
    corpus_crops: int = 1
    corpus_root: str = ""

    def __post_init__(self) -> None:
        for name in ("mixed_crops", "dead_leaves"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.corpus_crops < 1:
            raise ValueError(f"corpus_crops must be >= 1, got {self.corpus_crops}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["codec"] = self.codec.to_dict()
        return d

    def key(self, *, data_only: bool = False) -> str:
        """Hash of what determines the cached teacher outputs (``data_only``) or the run.

        Progress, threads and the run folder do not change results, so they stay out.
        """
        d = self.to_dict()
        d["fit"] = self.fit.to_dict()  # leaves out knobs at their "off" value (rate_weight 0)
        for k in ("progress", "threads", "run_dir"):
            d.pop(k)
        corpus: tuple[str, ...] = ("corpus_crops", "corpus_root")
        if "debian-corpus" not in self.sources:  # unread: keys of corpus-free runs unchanged
            for k in corpus:
                d.pop(k)
            corpus = ()
        if data_only:
            keep = ("model", "after", "train_crops", "mixed_crops", "dead_leaves", "sources")
            d = {k: d[k] for k in (*keep, "heldout_crops", "input_size", "imagenet_root",
                                   "half_features", *corpus)}  # fmt: skip
            d["seed"] = self.fit.seed
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
