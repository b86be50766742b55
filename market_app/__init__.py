"""The apps on top of the market: the ``market`` command line (:mod:`.cli`), the HTTP API and dashboard
(:mod:`.api`), ``market verify`` (:mod:`.verify`) and the user's settings (:mod:`.settings`).

This is the top floor: it may import every package below it (``simulator``, the roles ``owner``,
``trainer_node``, ``aggregator``, and ``market``); nothing below imports it.
"""
