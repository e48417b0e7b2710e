"""The board daemon ``splitfit-device``: capture -> int8 TFLite head -> codec -> ZeroMQ.

Lean by contract: numpy, pillow, pyzmq, smbus2, gpiozero, ai-edge-litert only.
"""
