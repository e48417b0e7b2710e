"""The knobs of BottleFit's two stages and the record of a stage's losses.

Why apart: the config is what run keys, checkpoints and the CLI are built from, and the
stages read it; it holds no training code.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

STAGE2_TRAINABLE = ("tail", "restoration", "bottleneck", "all")


@dataclass(frozen=True)
class BottleFitConfig:
    """Schedule and loss knobs of both stages (recorded verbatim in the metrics)."""

    stage1_epochs: int = 8
    stage2_epochs: int = 2
    batch_size: int = 32
    stage1_lr: float = 3e-3
    stage2_lr: float = 3e-4
    temperature: float = 2.0
    kd_weight: float = 1.0  # loss = kd_weight * KD + (1 - kd_weight) * CE (CE on labelled rows)
    # "tail": restoration + tail; "restoration": restoration only; "bottleneck": reduction +
    # restoration (the device-side encoder keeps learning, the teacher's tail stays frozen);
    # "all": reduction + restoration + tail (end-to-end KD; needs hundreds of photos, on a
    # dozen it overfits)
    stage2_train: str = "tail"
    # Stage 1 matches the teacher this many segments *after* the split (0 = at the split),
    # training those tail segments too: the decoder side gets the capacity of a real stage.
    distill_depth: int = 0
    # Half-width of uniform noise added to the reduction's output before the wire codec while
    # the reduction trains (stage 1, and stage 2 with "bottleneck"). The board runs an int8
    # head whose output differs from the float head's by a few int8 steps (6/255 each); with
    # 1-2-bit codes that flips the values sitting near a threshold. Noise during training
    # pushes values off the thresholds and teaches the decoder to tolerate the flips.
    wire_noise: float = 0.0
    # > 0: a learned entropy model on the bottleneck (training.entropy_model) and stage 2's
    # loss gains rate_weight * estimated bytes/frame; needs a stage2_train that trains the
    # reduction ("bottleneck" or "all"), since only the encoder can make features cheap
    rate_weight: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.stage1_epochs < 0 or self.stage2_epochs < 0:
            raise ValueError("stage epochs must be >= 0")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.kd_weight <= 1.0:
            raise ValueError(f"kd_weight must be in [0, 1], got {self.kd_weight}")
        if self.wire_noise < 0:
            raise ValueError(f"wire_noise must be >= 0, got {self.wire_noise}")
        if self.distill_depth < 0:
            raise ValueError(f"distill_depth must be >= 0, got {self.distill_depth}")
        if self.stage2_train not in STAGE2_TRAINABLE:
            raise ValueError(
                f"stage2_train must be one of {STAGE2_TRAINABLE}, got {self.stage2_train!r}"
            )
        if not (self.rate_weight >= 0 and math.isfinite(self.rate_weight)):
            raise ValueError(f"rate_weight must be a finite number >= 0, got {self.rate_weight}")
        if self.rate_weight > 0 and self.stage2_train not in ("bottleneck", "all"):
            raise ValueError(
                "rate_weight > 0 needs stage2_train 'bottleneck' or 'all' (the reduction "
                f"must train to make features cheap), got {self.stage2_train!r}"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["rate_weight"]:
            d.pop("rate_weight")  # run keys (checkpoints, caches) from before stay valid
        return d


@dataclass
class StageHistory:
    """Mean loss per epoch of one stage, plus its wall time."""

    name: str
    losses: list[float] = field(default_factory=list)
    wall_s: float = 0.0
