"""Backbones by name, so the CLI, the search and export all say ``--model resnet50``.

A plain dict plus a decorator (timm style): registering is an import side effect of
``training.models``, which imports every backbone module once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import nn

ModelFactory = Callable[..., nn.Module]
F = TypeVar("F", bound=ModelFactory)

_REGISTRY: dict[str, ModelFactory] = {}


def register_model(fn: F) -> F:
    """Register a factory under its function name; duplicate names are a programming error."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def create_model(
    name: str, *, num_classes: int = 1000, pretrained: bool = False, **kwargs
) -> nn.Module:
    """Build a registered backbone. ``pretrained`` loads weights that ship offline, or fails."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(list_models())}") from None
    model = factory(num_classes=num_classes, pretrained=pretrained, **kwargs)
    model.registry_name = name  # recorded in split specs and manifests
    return model
