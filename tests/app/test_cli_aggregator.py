"""`market aggregator status`: what the registry asks of a member and where its penalties go (real CLI, in-process,
against one Anvil)."""

from __future__ import annotations

from pathlib import Path

import pytest

from market.chain.client import Chain
from market.chain.contract import MarketContract
from market.chain.devchain import AnvilProcess, dev_accounts
from market_app import cli


def test_status_says_where_penalties_go_and_how_much_was_burned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    owner, member, stranger = dev_accounts(3)
    with AnvilProcess(accounts=3) as node:
        contract = MarketContract.deploy(Chain.connect(node.rpc_url), owner)
        contract.registry.register(member)
        chain = ["--rpc", node.rpc_url, "--contract", contract.address, "--store-dir", str(tmp_path / "store")]

        assert cli.main(["aggregator", "status", "--address", member.address, *chain]) == 0
        out = capsys.readouterr().out
        assert "1 aggregators in the draw" in out
        assert "a silent member's to the round's paid trainers, a dissenter's burned: 0.000000 ETH so far" in out
        assert f"{member.address}: in the draw; bond 1.000000 ETH" in out

        assert cli.main(["aggregator", "status", "--address", stranger.address, *chain]) == 0
        assert f"{stranger.address}: not registered" in capsys.readouterr().out
