"""Fault injection for crash-safety tests: ``MARKET_FAILPOINT=name`` kills the process
(SIGKILL, no cleanup, exactly like a power cut) when it reaches the point called ``name``.

Points: ``trainer_after_submit`` (committed on-chain, nothing uploaded or revealed yet),
``trainer_after_upload`` (update uploaded at reveal time, not yet revealed), ``aggregator_before_post`` (updates
fetched, receipt stored, result not yet posted). Unset in normal use: then a no-op.
"""

from __future__ import annotations

import os
import signal


def failpoint(name: str) -> None:
    if os.environ.get("MARKET_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
