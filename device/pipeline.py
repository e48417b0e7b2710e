"""One split point ready to run: head interpreter + codec + the HELLO that opens its session.

Why together: the codec's shape/quantization and the HELLO must come from the same head
manifest, or the server would decode with the wrong parameters without noticing.
"""

from __future__ import annotations

from dataclasses import dataclass

from device.cloud import CloudInput, build_cloud
from device.config import CodecSection, HeadSection, ServerSection
from device.head import Head
from wire.codecs import FeatureCodec
from wire.protocol import Hello
from wire.quant import QuantParams


@dataclass
class Split:
    """A partition whose frames go to the server: a split head, or ``cloud`` (the picture)."""

    cfg: HeadSection
    head: Head | CloudInput
    codec: FeatureCodec
    hello: Hello

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def cloud(self) -> bool:
        """No head on the board: the preprocessed picture itself is the payload."""
        return isinstance(self.head, CloudInput)


def build_split(
    cfg: HeadSection, codec_cfg: CodecSection, server: ServerSection, device_name: str
) -> Split:
    if cfg.kind == "cloud":  # [codec] is for bottlenecks; the picture's JPEG has its own
        inp, codec, hello = build_cloud(cfg, server, device_name)
        return Split(cfg=cfg, head=inp, codec=codec, hello=hello)
    head = Head(cfg.name, cfg.model, cfg.manifest, num_threads=cfg.num_threads)
    mcodec = dict(head.manifest.codec or {})
    name = codec_cfg.name or mcodec.get("name") or "jpeg"
    bits = codec_cfg.bits or int(mcodec.get("bits", 8))
    params = codec_cfg.params if codec_cfg.params is not None else dict(mcodec.get("params", {}))
    quant = QuantParams(scale=head.quant.scale, zero_point=head.quant.zero_point, bits=bits)
    # table codecs (rans, zstd_dict) take the manifest's tables and name them in the HELLO
    codec = FeatureCodec(
        head.bottleneck_chw, quant, name, params, tables=head.manifest.codec_tables()
    )
    hello = Hello(
        model_id=head.model_id,
        tensor_shape=tuple(head.bottleneck_chw),
        dtype="int8",
        scale=quant.scale,
        zero_point=quant.zero_point,
        bits=bits,
        codec=name,
        codec_params=dict(codec.params),
        device_name=device_name,
        max_payload=server.max_payload,
        token_id=server.token_id,
    )
    return Split(cfg=cfg, head=head, codec=codec, hello=hello)


def manifest_tail_ms(head: Head | CloudInput) -> float | None:
    """The split's idle tail time if the search/converter recorded one in ``extra``."""
    extra = head.manifest.extra or {}
    for key in ("profile", "split"):
        sub = extra.get(key)
        if isinstance(sub, dict) and isinstance(sub.get("tail_ms"), (int, float)):
            return float(sub["tail_ms"])
    return None
