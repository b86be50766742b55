"""Typed errors a user can hit. The CLI prints ``str(err)`` on one line and exits non-zero."""

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


class MalformedUpdateError(MarketError):
    """An update blob is not a well-formed safetensors file of the expected shape."""


class ChainError(MarketError):
    """A transaction reverted or the node could not be reached."""


class ContractRevert(ChainError):
    """The contract reverted with one of its custom errors (``name``)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class UnknownTaskError(ChainError):
    """No task with that id exists on this contract."""
