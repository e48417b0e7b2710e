"""Command line entry point for ``convert-head``.

Every expected failure is a ``ConversionError``: printed as one line, non-zero exit, no
traceback, and nothing written to the output paths.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converter.errors import ConversionError
from wire import exitcodes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="convert-head",
        description=(
            "Convert a trained PyTorch head (TorchScript or torch.export .pt2) to a full-int8 "
            "TFLite model whose input is raw uint8 RGB pixels (NHWC; normalisation folded in) "
            "and whose output is the int8 NHWC bottleneck, plus a head.json manifest. The "
            "result is verified against PyTorch on held-out calibration images."
        ),
    )
    p.add_argument("model", type=Path, help="TorchScript file or torch.export program (.pt2)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output .tflite path")
    cal = p.add_mutually_exclusive_group(required=True)
    cal.add_argument("--calib", type=Path, metavar="DIR", help="folder of calibration images")
    cal.add_argument(
        "--calib-synthetic", type=int, metavar="N", help="N seeded synthetic calibration images"
    )
    p.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), help="head input size")
    p.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"), help="default ImageNet")
    p.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"), help="default ImageNet")
    p.add_argument("--labels", type=Path, metavar="FILE", help="one label per line, or JSON list")
    p.add_argument("--tail", type=Path, metavar="TAIL", help="tail model for top-1 agreement")
    p.add_argument(
        "--min-cosine",
        type=float,
        default=0.99,
        help="fail (no output) if the int8 head's cosine similarity to PyTorch is below this",
    )
    p.add_argument(
        "--output-range",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="fix the int8 output quantisation to [LO, HI] (default: the range training "
        "recorded in head.pt.json, else what calibration observes)",
    )
    p.add_argument("--manifest", type=Path, help="manifest path (default: OUTPUT with .json)")
    p.add_argument("--seed", type=int, default=0, help="seed for --calib-synthetic")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imported here so `convert-head --help` answers without loading torch.
    from converter.pipeline import ConvertOptions, convert_head

    opts = ConvertOptions(
        model=args.model,
        output=args.output,
        calib_dir=args.calib,
        calib_synthetic=args.calib_synthetic,
        input_hw=tuple(args.input_size) if args.input_size else None,
        mean=tuple(args.mean) if args.mean else None,
        std=tuple(args.std) if args.std else None,
        labels_file=args.labels,
        tail=args.tail,
        min_cosine=args.min_cosine,
        output_range=tuple(args.output_range) if args.output_range else None,
        manifest_path=args.manifest,
        progress=not args.no_progress,
        seed=args.seed,
    )
    try:
        result = convert_head(opts)
    except ConversionError as exc:
        print(f"convert-head: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("convert-head: interrupted; no output written", file=sys.stderr)
        return exitcodes.INTERRUPTED
    v = result.verification
    m = result.manifest
    line = (
        f"wrote {result.tflite_path} ({m.extra['tflite_bytes']} bytes) + {result.manifest_path}: "
        f"input uint8 {m.input.shape}, output int8 {m.output.shape} "
        f"(scale {m.output.scale:.6g}, zp {m.output.zero_point}); cosine min {v.cosine_min:.4f} "
        f"mean {v.cosine_mean:.4f} on {v.n_images} held-out images"
    )
    if v.top1_agreement is not None:
        line += f", top-1 agreement {v.top1_agreement:.3f}"
    print(line)
    return exitcodes.OK


if __name__ == "__main__":
    sys.exit(main())
