"""Shared helpers for the converter tests: small real heads, real photos, the interpreter.

Why here: ``test_converter_device_venv`` used to import these from ``test_converter``, so
collecting one test module ran another's module code. Heads are real ``nn.Module``s with
seeded weights and non-trivial BN statistics; photos are scikit-image and scikit-learn's
bundled samples (no download); ``run_tflite`` runs a converted model with ai-edge-litert.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from hardware.preprocess import preprocess

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- heads


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs, BN, residual add (projected when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.down is None else self.down(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + identity)


class ResNetHead(nn.Module):
    """ResNet stem + two residual blocks + BottleNet reduction unit (1x1 channel conv,
    strided spatial conv, BN, ReLU)."""

    def __init__(self, bottleneck_channels: int = 8) -> None:
        super().__init__()
        # 32 stem channels: wide enough that the 7x7 RGB stem is split for int8 speed
        # (converter.narrow_conv), as ResNet-50's 64-channel stem is
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 7, 2, 3, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        self.layer1 = BasicBlock(32, 32)
        self.layer2 = BasicBlock(32, 32, stride=2)
        self.reduction = nn.Sequential(
            nn.Conv2d(32, bottleneck_channels, 1),
            nn.Conv2d(bottleneck_channels, bottleneck_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(bottleneck_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.layer2(self.layer1(self.stem(x))))


class InvertedResidual(nn.Module):
    def __init__(self, c: int, expand: int, stride: int) -> None:
        super().__init__()
        hidden = c * expand
        self.use_res = stride == 1
        self.body = nn.Sequential(
            nn.Conv2d(c, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c, 1, bias=False),
            nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.use_res else y


class DepthwiseHead(nn.Module):
    """MobileNet-style head: depthwise-separable inverted residuals, then a reduction."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True)
        )
        self.block1 = InvertedResidual(16, 3, 1)
        self.block2 = InvertedResidual(16, 3, 2)
        self.reduction = nn.Sequential(
            nn.Conv2d(16, 16, 3, 2, 1, groups=16, bias=False),
            nn.Conv2d(16, 6, 1, bias=False),
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.block2(self.block1(self.stem(x))))


def make_head(cls: type[nn.Module], seed: int) -> nn.Module:
    """Seeded weights with non-trivial BN statistics, as a trained network would have."""
    torch.manual_seed(seed)
    head = cls()
    for m in head.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.6, 1.4)
            m.bias.data.uniform_(-0.1, 0.3)
    return head.eval()


def save_torchscript(head: nn.Module, path: Path) -> Path:
    torch.jit.save(torch.jit.script(head), str(path))
    return path


def save_exported(head: nn.Module, path: Path, hw: tuple[int, int]) -> Path:
    ep = torch.export.export(head, (torch.rand(1, 3, *hw),))
    torch.export.save(ep, str(path))
    return path


# ----------------------------------------------------------------------------- photos


def _photos() -> dict[str, np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    out = {
        name: getattr(skimage.data, name)()
        for name in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
    }
    china, flower = load_sample_images().images
    out["china"], out["flower"] = china, flower
    return out


PHOTOS = None


def photos() -> dict[str, np.ndarray]:
    global PHOTOS
    if PHOTOS is None:
        PHOTOS = _photos()
    return PHOTOS


def crops(names: list[str], n: int, seed: int) -> list[np.ndarray]:
    """Random crops (25-90 % of each side) of the named photos: many natural-looking images."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = photos()[names[i % len(names)]]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.25, 0.9)), int(w * rng.uniform(0.25, 0.9))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(np.ascontiguousarray(img[y : y + ch, x : x + cw]))
    return out


CALIB_PHOTOS = ["astronaut", "coffee", "china", "immunohistochemistry"]
EVAL_PHOTOS = ["chelsea", "rocket", "flower"]  # never seen by calibration


def write_calibration_folder(folder: Path, n: int = 15, seed: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(crops(CALIB_PHOTOS, n, seed)):
        ext = "jpg" if i % 2 else "png"
        Image.fromarray(img).save(folder / f"calib_{i:02d}.{ext}")
    return folder


# ----------------------------------------------------------------------------- interpreter


def run_tflite(model: Path, pixels: np.ndarray) -> tuple[np.ndarray, dict, object]:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(model), num_threads=1)
    # before allocate_tensors: afterwards XNNPACK has replaced ops by a DELEGATE node
    details = it._get_ops_details()
    ops = Counter(op["op_name"] for op in details)
    shapes = {t["index"]: [int(d) for d in t["shape"]] for t in it.get_tensor_details()}
    # CONV_2D filters as [C_out, k_h, k_w, C_in]
    conv_filters = [shapes[op["inputs"][1]] for op in details if op["op_name"] == "CONV_2D"]
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for i in range(pixels.shape[0]):
        it.set_tensor(inp["index"], pixels[i : i + 1])
        it.invoke()
        ys.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(ys), {"input": inp, "output": out, "ops": ops, "convs": conv_filters}, it


def eval_pixels(hw: tuple[int, int], n: int = 6, seed: int = 7) -> np.ndarray:
    return np.concatenate([preprocess(img, hw) for img in crops(EVAL_PHOTOS, n, seed)])
