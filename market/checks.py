"""A list of named checks, each passed or failed with a one-line detail (``market verify``, ``market zk audit``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Checks:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append((name, ok, detail))
        return ok

    @property
    def ok(self) -> bool:
        """True when there was at least one check and every one passed."""
        return bool(self.checks) and all(ok for _, ok, _ in self.checks)
