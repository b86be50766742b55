"""``market``: one console script with a sub-command per role.

    market demo | simulate | devnet
    market task create | init | status | results | settle | reclaim | refunds
    market verify --task T [--round R] [--validation FILE]
    market trainer join | run | withdraw | leave
    market aggregator run
    market data split | commitment
    market serve                      (HTTP API + live dashboard)

``main.py`` builds the parser and runs a command; each command lives in its own module
(``simulate``, ``devnet``, ``data``, ``task``, ``roles``, ``serve``) with helpers in ``common``.
"""

from market_app.cli.main import build_parser, main
from market_app.cli.simulate import _SimProgress, cmd_simulate

__all__ = ["main", "build_parser", "cmd_simulate", "_SimProgress"]
