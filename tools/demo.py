"""The main job on the bundled example (``make demo``).

Today it validates ``policies/``; it grows into the full pass (local clusters, reconcile, status
commit) as the pipeline stages land.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    return subprocess.call([sys.executable, "-m", "reconciler", "validate", str(REPO / "policies")])


if __name__ == "__main__":
    raise SystemExit(main())
