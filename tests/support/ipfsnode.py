"""A throwaway, offline js-ipfs daemon that speaks Kubo's HTTP RPC API (``/api/v0``).

No Kubo binary can be installed on these machines, but the npm package ``ipfs``
(js-ipfs 0.66.1, pinned in ``package.json``) runs on Node 20 and answers the same
RPC calls the :class:`market.store.kubo.KuboStore` backend makes. :class:`JsIpfsNode`
starts one from the project's ``node_modules`` for tests and ``--store kubo`` runs:

1. ``jsipfs init --empty-repo`` into a fresh temporary ``IPFS_PATH``;
2. rewrite the repo's ``config`` so nothing listens beyond 127.0.0.1 or reaches the
   network (API/Gateway on free loopback ports, no swarm addresses, no bootstrap
   peers, no delegates, no mDNS/webRTC-star/NAT, no DHT, no gRPC endpoint);
   js-ipfs hangs before opening its API if Swarm/Delegates/Bootstrap are left set;
3. ``jsipfs daemon --offline --enable-preload=false`` with
   ``NODE_OPTIONS=--import tools/ipfs/promise-with-resolvers.mjs`` (Node 20 lacks
   ``Promise.withResolvers``, which js-ipfs' dependencies call) and
   ``NO_UPDATE_NOTIFIER=1`` (otherwise the CLI spawns a detached process that asks
   the npm registry for a newer version);
4. poll ``POST /api/v0/version`` until it answers.

The daemon runs in its own process group (``node`` is started directly, never via
``npx``, whose death would orphan the child); :meth:`JsIpfsNode.stop` signals the
whole group and deletes the temporary repo, and the context manager calls it on
every exit path, exceptions and ``KeyboardInterrupt`` included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from market.errors import ConfigError, StoreError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
POLYFILL = PROJECT_ROOT / "tools" / "ipfs" / "promise-with-resolvers.mjs"
_CLI_IN_PACKAGE = Path("ipfs") / "src" / "cli.js"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 1) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:] if line.strip())


def offline_config(config: dict[str, Any], api_port: int, gateway_port: int) -> dict[str, Any]:
    """Return the js-ipfs repo ``config`` rewritten for an offline loopback-only node."""
    addresses = config.setdefault("Addresses", {})
    addresses["API"] = f"/ip4/127.0.0.1/tcp/{api_port}"
    addresses["Gateway"] = f"/ip4/127.0.0.1/tcp/{gateway_port}"
    addresses.pop("RPC", None)  # no gRPC-over-websocket server
    addresses["Swarm"] = []
    addresses["Announce"] = []
    addresses["NoAnnounce"] = []
    addresses["Delegates"] = []
    config["Bootstrap"] = []
    config["Discovery"] = {"MDNS": {"Enabled": False, "Interval": 10}, "webRTCStar": {"Enabled": False}}
    config.setdefault("Swarm", {})["DisableNatPortMap"] = True
    config.setdefault("Pubsub", {})["Enabled"] = False
    config["Routing"] = {"Type": "none"}
    return config


class JsIpfsNode:
    """A real js-ipfs daemon on 127.0.0.1, offline, with a temporary repo.

    Use as a context manager::

        with JsIpfsNode() as node:
            store = KuboStore(node.api_url)

    Attributes set once started: ``api_url`` (``http://127.0.0.1:PORT``, the base the
    RPC paths ``/api/v0/...`` hang off), ``gateway_url``, ``repo_path``, ``pid`` and
    ``startup_seconds`` (init + daemon start until the API answered).
    """

    def __init__(
        self,
        *,
        node_modules: str | os.PathLike[str] | None = None,
        node_binary: str | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.node_modules = Path(node_modules) if node_modules else PROJECT_ROOT / "node_modules"
        self.node_binary = node_binary
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.api_url = ""
        self.gateway_url = ""
        self.repo_path: Path | None = None
        self.pid: int | None = None
        self.startup_seconds: float | None = None
        self._tmpdir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    def __repr__(self) -> str:
        return f"JsIpfsNode(api_url={self.api_url!r}, pid={self.pid})"

    # -- locating the tools -------------------------------------------------

    @property
    def cli_path(self) -> Path:
        return self.node_modules / _CLI_IN_PACKAGE

    def _resolve_tools(self) -> tuple[str, Path]:
        cli = self.cli_path
        if not cli.is_file():
            raise ConfigError(
                f"js-ipfs is not installed ({cli} is missing): run `make install` first"
            )
        node = self.node_binary or shutil.which("node")
        if not node:
            raise ConfigError("the `node` binary (Node.js >= 20) is not on PATH: install Node.js first")
        if not POLYFILL.is_file():
            raise ConfigError(f"{POLYFILL} is missing from the checkout")
        return node, cli

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        assert self.repo_path is not None
        env["IPFS_PATH"] = str(self.repo_path)
        env["NO_UPDATE_NOTIFIER"] = "1"
        env.pop("DEBUG", None)  # js-ipfs' debug logging would flood the log file
        # as_uri() percent-encodes spaces, which NODE_OPTIONS would split on.
        extra = f"--import {POLYFILL.as_uri()}"
        env["NODE_OPTIONS"] = f"{env['NODE_OPTIONS']} {extra}" if env.get("NODE_OPTIONS") else extra
        return env

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> "JsIpfsNode":
        """Init a temporary repo, start the daemon and wait for its API."""
        if self._proc is not None:
            raise StoreError("this JsIpfsNode is already running")
        node, cli = self._resolve_tools()
        began = time.monotonic()
        try:
            self._tmpdir = Path(tempfile.mkdtemp(prefix="market-jsipfs-"))
            self.repo_path = self._tmpdir / "repo"
            self._log_path = self._tmpdir / "daemon.log"
            self._init_repo(node, cli)
            # A port found free can be taken before the daemon binds it: retry then.
            for attempt in range(3):
                api_port, gateway_port = _free_port(), _free_port()
                self._write_config(api_port, gateway_port)
                self.api_url = f"http://127.0.0.1:{api_port}"
                self.gateway_url = f"http://127.0.0.1:{gateway_port}"
                self._spawn(node, cli)
                try:
                    self._wait_ready(began)
                    break
                except StoreError:
                    if attempt < 2 and "EADDRINUSE" in _log_tail(self._log_path, 50):
                        self._kill()
                        continue
                    raise
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _init_repo(self, node: str, cli: Path) -> None:
        assert self._log_path is not None
        with open(self._log_path, "ab") as log:
            try:
                result = subprocess.run(
                    [node, str(cli), "init", "--empty-repo"],
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=self.start_timeout,
                    check=False,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired:
                raise StoreError(f"`jsipfs init` did not finish within {self.start_timeout:g} s") from None
        if result.returncode != 0:
            raise StoreError(f"`jsipfs init` failed (exit {result.returncode}): {_log_tail(self._log_path)}")

    def _write_config(self, api_port: int, gateway_port: int) -> None:
        assert self.repo_path is not None
        path = self.repo_path / "config"
        config = offline_config(json.loads(path.read_text()), api_port, gateway_port)
        path.write_text(json.dumps(config, indent=2))

    def _spawn(self, node: str, cli: Path) -> None:
        assert self._log_path is not None
        with open(self._log_path, "ab") as log:
            self._proc = subprocess.Popen(
                [node, str(cli), "daemon", "--offline", "--enable-preload=false"],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills all of it
            )
        self.pid = self._proc.pid

    def _wait_ready(self, began: float) -> None:
        assert self._proc is not None and self._log_path is not None
        deadline = began + self.start_timeout
        url = f"{self.api_url}/api/v0/version"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise StoreError(
                    f"js-ipfs daemon exited with code {code} before its API answered: {_log_tail(self._log_path)}"
                )
            try:
                if requests.post(url, timeout=1.0).ok:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise StoreError(
                    f"js-ipfs daemon API at {self.api_url} did not answer within "
                    f"{self.start_timeout:g} s: {_log_tail(self._log_path)}"
                )
            time.sleep(0.1)

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session: the daemon leads its own group
        try:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)  # the daemon shuts down cleanly on SIGTERM
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_timeout)
        finally:
            # Whatever is left of the group (the leader, or children it started) goes
            # now, even if the wait above was interrupted.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_timeout)

    def stop(self) -> None:
        """Kill the daemon's process group and delete the temporary repo (idempotent)."""
        try:
            self._kill()
        finally:
            tmp, self._tmpdir = self._tmpdir, None
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> "JsIpfsNode":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
