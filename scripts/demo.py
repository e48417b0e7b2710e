"""`make demo`: run the end-to-end path that exists so far.

Replaced by the real demo (server + device + INA226 simulator on the shipped photos) when the
end-to-end issue lands. Until then it reports honestly that no end-to-end path exists yet.
"""

from __future__ import annotations

import sys


def main() -> int:
    print("splitfit demo: the end-to-end path is not assembled yet; nothing to stream.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
