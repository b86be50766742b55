"""The whole marketplace on one machine: owner, trainer nodes (some attackers), aggregator.

It sits above the roles (``owner``, ``trainer_node``, ``aggregator``, which never import each
other) and drives them through the same chain client and store a real deployment uses.
"""
