"""Proof-of-Contribution market, the ground floor: protocol types and rules (spec, CIDs, tensors,
models, data, commitments, payout split, round receipt), the chain client (:mod:`market.chain`),
the content store (:mod:`market.store`) and the zero-knowledge helpers (:mod:`market.zk`).

It imports nothing of the project above it: the roles (``owner``, ``trainer_node``,
``aggregator``) import from here and never each other; the apps live in ``market_app``.
"""

__version__ = "0.1.0"
