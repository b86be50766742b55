"""Typed errors a user can hit, by kind. The CLI prints ``str(err)`` on one line and exits non-zero;
the HTTP API maps each kind to a status code by its type (never by its text).

* :class:`ConfigError` — a bad option, spec file, key file or setting: the user's to fix.
* :class:`DataError` — bytes that are not what they claim (a corrupt document, a malformed update).
* :class:`StoreError` — the content store could not produce or accept a blob.
* :class:`ChainError` — the chain refused (:class:`ContractRevert`), could not be reached
  (:class:`NodeUnreachable`), or its events are inconsistent.
"""

from __future__ import annotations


class MarketError(Exception):
    """Base class of every error the product reports to a user."""

    exit_code: int = 1


class ConfigError(MarketError):
    """A bad option, spec file, key file or setting."""

    exit_code = 2


class StoreError(MarketError):
    """The content store could not produce or accept a blob."""


class CidMismatchError(StoreError):
    """The bytes read back do not hash to the CID they were asked for."""


class BlobNotFoundError(StoreError):
    """No blob with that CID is in the store."""


class DataError(MarketError):
    """Bytes that are not what they claim to be: a corrupt document, a blob of the wrong kind."""


class MalformedUpdateError(DataError):
    """An update blob is not a well-formed safetensors file of the expected shape."""


class ChainError(MarketError):
    """A transaction reverted or the node could not be reached."""


class ContractRevert(ChainError):
    """The contract reverted with one of its custom errors (``name``)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class NodeUnreachable(ChainError):
    """The chain's node cannot be reached (after retries)."""


class UnknownTaskError(ChainError):
    """No task with that id exists on this contract."""


class InsufficientFunds(MarketError):
    """An account cannot pay for what it asked (a task's reward, a transaction's gas)."""


class NotFoundError(MarketError):
    """A round, receipt or other record that was asked for does not exist (yet)."""
