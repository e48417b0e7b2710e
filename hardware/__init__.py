"""Board hardware behind narrow interfaces, each with a register-level simulator.

INA226 power monitor (smbus2 or the kernel's hwmon), power sampler and crash-safe log,
camera sources, GPIO status LED. Never imports torch or tensorflow.
"""
