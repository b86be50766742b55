"""The project owner's role: publish a task's spec and initial model, escrow the reward.

Runs on the owner's machine and meets trainer nodes and the aggregator only through the chain and
the content store, so it imports ``market`` and never another role.
"""
