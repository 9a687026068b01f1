"""Bulk payout benchmark: bench/payouts.py's bulk part alone (one batch of --bulk-n items, 10,000 by
default, against its own stack), printed in the same goal table.

    .venv/bin/python bench/bulk_payouts.py
    .venv/bin/python bench/bulk_payouts.py --bulk-n 10000 --settle-timeout 300

bench/payouts.py runs the single payouts and this batch side by side in one run.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.payouts import main

if __name__ == "__main__":
    main(singles_default=0)
