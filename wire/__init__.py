"""The bytes that cross the link: frame protocol and feature codecs.

Shared by the board (``device``) and the tail server (``server``); pure numpy + pillow +
zstandard so it can run on the board. Never imports torch or tensorflow.
"""
