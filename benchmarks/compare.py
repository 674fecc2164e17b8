"""Every job side by side on one real Kafka broker: ``python benchmarks/compare.py --help``.

The code is the package benchmarks/compare/ (runners in benchmarks/compare/runners/,
Flink's job in benchmarks/flink/)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The runners are scripts run in other environments; the orchestrator shares their
# record layout and output check by importing them from the same folder.
sys.path[:0] = [str(HERE), str(HERE / "compare" / "runners")]

from compare.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
