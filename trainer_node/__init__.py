"""Trainer node: local training on private data and the attacks used in simulation.

Runs on a data owner's machine. It meets the aggregator only through the chain
and the content store, so it never imports ``aggregator`` (and vice versa);
both share types from ``market``.
"""
