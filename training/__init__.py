"""Bottleneck models and their training: BottleNet, BottleFit, BottleNet++, Algorithm 1."""
