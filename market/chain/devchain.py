"""Local chains for development: a throwaway Anvil (or Ganache) process, or the in-process EVM.

Anvil comes from the project's ``node_modules`` (npm ``@foundry-rs/anvil``) and
is started from its binary, never through ``npx`` (a killed ``npx`` leaves its
child running). It listens on 127.0.0.1 only, on a free port, and is stopped
whatever happens (context manager, ``atexit`` and signal handlers).

Dev accounts are derived from Anvil's well-known test mnemonic; they hold
play money only. Their keys are kept in memory and written only to key files
with mode 0600 (never printed).

Ganache 7 (npm ``ganache``, deprecated upstream but still in use) is started the
same way, from its node entry point (``node …/ganache/dist/node/cli.js``), never
through ``npx``; its stdout (which lists the dev private keys) is discarded.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from eth_account import Account
from eth_account.signers.local import LocalAccount

from market.errors import ChainError, ConfigError

ROOT = Path(__file__).resolve().parents[2]  # the project root: Anvil and Ganache come from its node_modules
DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_BALANCE_ETH = 10_000


def dev_accounts(n: int) -> list[LocalAccount]:
    """The first ``n`` accounts of the test mnemonic (the ones Anvil funds)."""
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(n)]


def anvil_binary() -> str:
    explicit = os.environ.get("MARKET_ANVIL")
    if explicit:
        return explicit
    hits = sorted(glob.glob(str(ROOT / "node_modules" / "@foundry-rs" / "anvil-*" / "bin" / "anvil")))
    if not hits:
        raise ConfigError("anvil is not installed in node_modules: run `make install` (npm ci) first")
    return hits[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ganache_command() -> list[str]:
    """``node …/ganache/dist/node/cli.js`` from the project's ``node_modules`` (``MARKET_GANACHE`` overrides the path)."""
    cli = os.environ.get("MARKET_GANACHE") or str(ROOT / "node_modules" / "ganache" / "dist" / "node" / "cli.js")
    if not Path(cli).is_file():
        raise ConfigError("ganache is not installed in node_modules: run `make install` (npm ci) first")
    node = shutil.which("node")
    if not node:
        raise ConfigError("ganache needs Node.js: `node` is not on PATH")
    return [node, cli]


class AnvilProcess:
    """A throwaway Anvil on 127.0.0.1; use as a context manager."""

    name = "anvil"

    def __init__(self, accounts: int = 10, port: int | None = None, block_time: int | None = None) -> None:
        self.accounts = max(accounts, 2)
        self.port = port or free_port()
        self.block_time = block_time
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            anvil_binary(),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--accounts", str(self.accounts),
            "--balance", str(DEV_BALANCE_ETH),
            "--mnemonic", DEV_MNEMONIC,
            "--silent",
        ]
        if self.block_time:
            cmd += ["--block-time", str(self.block_time)]
        return cmd

    def start(self, timeout: float = 20.0) -> "AnvilProcess":
        cmd = self.command()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace").strip()
                raise ChainError(f"{self.name} exited at start: {err.splitlines()[-1] if err else 'no message'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ChainError(f"{self.name} did not open 127.0.0.1:{self.port} within {timeout:.0f} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.stderr:
            proc.stderr.close()

    def __enter__(self) -> "AnvilProcess":
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class GanacheProcess(AnvilProcess):
    """A throwaway Ganache 7 on 127.0.0.1 with the same accounts as Anvil; use as a context manager.

    Shanghai rules (the contract is built for shanghai), instant mining, chain id 1337.
    """

    name = "ganache"

    def command(self) -> list[str]:
        cmd = ganache_command() + [
            "--server.host", "127.0.0.1",
            "--server.port", str(self.port),
            "--wallet.mnemonic", DEV_MNEMONIC,
            "--wallet.totalAccounts", str(self.accounts),
            "--wallet.defaultBalance", str(DEV_BALANCE_ETH),
            "--chain.hardfork", "shanghai",
            "--logging.quiet",
        ]
        if self.block_time:
            cmd += ["--miner.blockTime", str(self.block_time)]
        return cmd


#: the local chains `market simulate --chain NAME` / `market devnet --chain NAME` can start
DEV_CHAINS: dict[str, type[AnvilProcess]] = {"anvil": AnvilProcess, "ganache": GanacheProcess}


def write_key_file(account: LocalAccount, path: Path) -> None:
    """Write a dev key to ``path`` readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(account.key.hex() + "\n")


def read_key_file(path: str | Path) -> LocalAccount:
    p = Path(path)
    try:
        text = p.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read key file {p}: {exc.strerror}") from None
    try:
        return Account.from_key(text if text.startswith("0x") else "0x" + text)
    except Exception:
        # never echo the file's content: it may be a key
        raise ConfigError(f"key file {p} does not hold a 32-byte hex private key") from None
