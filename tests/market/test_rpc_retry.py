"""A dropped RPC connection is retried with backoff and reported, not a traceback."""

from __future__ import annotations

import logging
import socket
import threading
from typing import Iterator

import pytest

from market.chain.client import Chain
from market.chain.contract import MarketContract
from market.chain.devchain import AnvilProcess, dev_accounts
from market.errors import ChainError


class FlakyProxy:
    """A TCP proxy on 127.0.0.1 in front of the node; while ``down`` it refuses to forward."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.down = False
        self.refused = 0
        self.live: list[socket.socket] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if self.down:
                self.refused += 1
                client.close()  # the connection drops before any answer
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.live += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def drop(self) -> None:
        """Cut every open connection and refuse new ones until ``down`` is cleared."""
        self.down = True
        for s in self.live:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.live.clear()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def proxied() -> Iterator[tuple[FlakyProxy, Chain, MarketContract]]:
    with AnvilProcess(accounts=3) as anvil:
        proxy = FlakyProxy(anvil.port)
        chain = Chain.connect(f"http://127.0.0.1:{proxy.port}")
        market = MarketContract.deploy(chain, dev_accounts(1)[0])
        yield proxy, chain, market
        proxy.close()


def test_dropped_connection_is_retried_and_logged(proxied, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    proxy, chain, market = proxied
    proxy.drop()
    threading.Timer(0.4, lambda: setattr(proxy, "down", False)).start()

    with caplog.at_level(logging.WARNING, logger="market.chain.client"):
        count = market.task_count()

    assert count == 0
    assert proxy.refused >= 1
    assert any("retry" in r.getMessage() for r in caplog.records)


def test_node_that_stays_down_is_one_clear_error(proxied) -> None:  # type: ignore[no-untyped-def]
    proxy, chain, market = proxied
    proxy.drop()

    with pytest.raises(ChainError, match="node unreachable after 4 tries") as exc:
        market.task_count()

    assert "\n" not in str(exc.value)
