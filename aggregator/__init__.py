"""Aggregator: validate updates, remove outliers, aggregate, value contributions, pay out.

Runs on the aggregator's machine and meets trainer nodes only through the
chain and the content store, so it never imports ``trainer_node``.  The core
(:mod:`aggregator.round` and the modules it calls) is pure computation over
tensors: no I/O, no chain, no globals.
"""
