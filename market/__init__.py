"""Proof-of-Contribution market: shared types, content store, chain client and CLI.

Both ``trainer_node`` and ``aggregator`` import from here; they never import
each other (they meet only through the chain and the store).
"""

__version__ = "0.1.0"
