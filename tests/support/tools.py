"""The console scripts the project promises an operator, named once for the tests that
check them (declared in pyproject, and each one's exit codes)."""

CONSOLE_SCRIPTS = (
    "convert-head",
    "splitfit-device",
    "splitfit-server",
    "power-log",
    "splitfit-train",
    "splitfit-bench",
)
