"""``market serve``: the HTTP API (FastAPI, OpenAPI at ``/openapi.json``) and the live dashboard.

It only reads the chain and the store (and, with an owner key, creates tasks through :mod:`owner.task`).
"""
