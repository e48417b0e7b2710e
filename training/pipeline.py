"""From a job description to a trained, evaluated, exported split model.

Shared by the ``splitfit-train train`` command and the benchmarks so what the benchmark
measures is exactly what users run.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from training.bottleneck import SplitNet, split_model
from training.compressor import CodecConfig, CompressorLayer, quant_params_for, wire_roundtrip
from training.data import DatasetBundle, build_dataset
from training.entropy_model import RateBottleneck, rate_loss
from training.export import ExportedSplit, export_split
from training.models import create_model
from training.plots import save_curves
from training.trainer import FitConfig, cross_entropy_loss, evaluate, fit
from wire.atomicfile import write_json_atomic
from wire.logjson import get_logger
from wire.quant import quantize_float_to_int8, requantize_int8

log = get_logger(__name__)

MODES = ("aware", "plain")


@dataclass
class TrainJob:
    data: str = "fashion-mnist"
    model: str = "resnet_small"
    pretrained: bool = False
    after: str = "rb1"
    channels: int = 2
    stride: int = 2
    codec: CodecConfig = field(default_factory=lambda: CodecConfig("jpeg", 8, {"quality": 20}))
    mode: str = "aware"  # aware: codec in the training loop (BottleNet); plain: without
    epochs: int = 3
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: str = "adamw"
    limit_train: int | None = None
    limit_val: int | None = None
    input_size: int | None = None
    seed: int = 0
    threads: int = 2
    progress: bool = True
    fashion_root: str | None = None
    device: str = "auto"  # auto: cuda when present, else cpu
    # > 0: a learned entropy model on the bottleneck (training.entropy_model) and
    # loss = CE + rate_weight * estimated bytes/frame; tables exported into the manifests
    rate_weight: float = 0.0

    def resolved_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch size must be >= 1")
        if not (self.rate_weight >= 0 and math.isfinite(self.rate_weight)):
            raise ValueError(f"rate_weight must be a finite number >= 0, got {self.rate_weight}")

    def identity(self) -> dict:
        """What must match for --resume to continue the same run."""
        d = asdict(self)
        for k in ("progress", "threads", "epochs", "device"):
            d.pop(k)
        if not d["rate_weight"]:
            d.pop("rate_weight")  # runs from before the rate term resume unchanged
        return d


@dataclass
class TrainResult:
    net: SplitNet
    bundle: DatasetBundle
    history: list
    metrics: dict
    exported: ExportedSplit | None = None


def _write_json(obj: dict, path: Path) -> None:
    write_json_atomic(path, obj, sort_keys=True)


def build_split_net(
    job: TrainJob, bundle: DatasetBundle
) -> tuple[SplitNet, CompressorLayer | RateBottleneck]:
    """The split model; its compressor is the wire codec, or the rate model when λ > 0."""
    model = create_model(job.model, num_classes=len(bundle.labels), pretrained=job.pretrained)
    head, tail = split_model(
        model, after=job.after, channels=job.channels, stride=job.stride, input_size=bundle.input_hw
    )
    if job.rate_weight > 0:
        rate = RateBottleneck(head.spec.bottleneck_chw[0], head.spec.out_max, job.codec.bits)
        return SplitNet(head, tail, rate), rate
    roundtrip = wire_roundtrip(head.spec.bottleneck_chw, head.spec.out_max, job.codec)
    comp = CompressorLayer(roundtrip, job.codec.to_dict())
    return SplitNet(head, tail, comp), comp


def rate_param_groups(net: SplitNet, rate: RateBottleneck, lr: float) -> list[dict]:
    """The entropy model learns at 10x the rate and without weight decay.

    Why: the density has to follow the features as they move (Ballé et al. and CompressAI
    give it its own optimizer); weight decay would pull its monotone MLP towards a flat
    density and overstate the rate.
    """
    prior = {id(p) for p in rate.prior.parameters()}
    rest = [p for p in net.parameters() if id(p) not in prior]
    return [
        {"params": rest},
        {"params": list(rate.prior.parameters()), "lr": 10 * lr, "weight_decay": 0.0},
    ]


@torch.no_grad()
def training_codes(net: SplitNet, loader: DataLoader, bits: int, device: str) -> np.ndarray:
    """The n-bit wire codes of the training set's bottlenecks (for the zstd dictionary)."""
    qp = quant_params_for(net.spec.out_max, bits)
    net.eval()
    out = []
    for x, _ in loader:
        z = net.head(x.to(device)).cpu().numpy()
        out.append(requantize_int8(quantize_float_to_int8(z, qp), qp))
    return np.concatenate(out)


def loaders(bundle: DatasetBundle, batch_size: int, seed: int) -> tuple[DataLoader, DataLoader]:
    if bundle.train is None:
        raise ValueError(f"dataset {bundle.name!r} is evaluation-only; it cannot be trained on")
    g = torch.Generator().manual_seed(seed)
    train = DataLoader(
        bundle.train, batch_size=batch_size, shuffle=True, generator=g, drop_last=True
    )
    val = DataLoader(bundle.val, batch_size=max(batch_size, 256))
    return train, val


def run_train(job: TrainJob, out_dir: Path | str, *, resume: bool = False) -> TrainResult:
    """Train (optionally resuming), evaluate with and without the codec, export, write results."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, job.threads))
    torch.manual_seed(job.seed)
    bundle = build_dataset(
        job.data,
        input_size=job.input_size,
        limit_train=job.limit_train,
        limit_val=job.limit_val,
        fashion_root=job.fashion_root,
        seed=job.seed,
        **_norm_for(job),
    )
    device = job.resolved_device()
    net, comp = build_split_net(job, bundle)
    train_loader, val_loader = loaders(bundle, job.batch_size, job.seed)
    comp.enabled = job.mode == "aware"
    loss_fn = params = None
    if isinstance(comp, RateBottleneck):
        loss_fn = rate_loss(cross_entropy_loss(), comp, job.rate_weight)
        params = rate_param_groups(net, comp, job.lr)
    log.info(
        "train_start",
        job=job.identity(),
        data=bundle.describe(),
        bottleneck_chw=list(net.spec.bottleneck_chw),
    )
    t0 = time.perf_counter()
    history = fit(
        net,
        train_loader,
        val_loader,
        FitConfig(epochs=job.epochs, lr=job.lr, optimizer=job.optimizer, progress=job.progress),
        checkpoint=out / "checkpoint.pt",
        resume=resume,
        identity=job.identity(),
        device=device,
        loss_fn=loss_fn,
        params=params,
    )
    train_seconds = time.perf_counter() - t0
    comp.enabled = False
    _, acc_plain = evaluate(net, val_loader, device=device)
    comp.enabled = True
    _, acc_codec = evaluate(net, val_loader, device=device)
    tables = None
    if isinstance(comp, RateBottleneck):
        codes = training_codes(net, train_loader, job.codec.bits, device)
        tables = comp.tables(codes)
    metrics = {
        "job": job.identity(),
        "data": bundle.describe(),
        "split": net.spec.to_dict(),
        "history": [asdict(r) for r in history],
        "val_acc_without_codec": acc_plain,
        "val_acc_with_codec": acc_codec,
        "train_seconds_this_session": train_seconds,
    }
    exported = export_split(
        net.head,
        net.tail,
        out,
        labels=list(bundle.labels),
        mean=bundle.mean,
        std=bundle.std,
        codec=job.codec,
        extra={
            "accuracy": {
                "val_top1_with_codec": acc_codec,
                "val_top1_without_codec": acc_plain,
                "data": bundle.describe(),
            },
            "training": job.identity(),
        },
        tables=tables,
    )
    metrics["model_id"] = exported.model_id
    _write_json(metrics, out / "metrics.json")
    save_curves(
        history,
        out / "curves.png",
        title=f"{job.model} split after {job.after}, C'={job.channels}, s={job.stride}, {job.mode}",
    )
    log.info(
        "train_done",
        model_id=exported.model_id,
        val_acc_with_codec=acc_codec,
        val_acc_without_codec=acc_plain,
        out=str(out),
    )
    return TrainResult(net, bundle, history, metrics, exported)


def _norm_for(job: TrainJob) -> dict:
    """Photo datasets use the backbone's own normalisation (Lite0: (x-127)/128)."""
    if job.data in ("fashion-mnist", "synthetic"):
        return {}
    model = create_model(job.model, num_classes=2)
    return {"mean": tuple(model.mean), "std": tuple(model.std)}
