"""A task paid in an ERC-20 token is never shown as ETH, and its trainers can withdraw the token.

Anyone can create a task with any token; a worthless 18-decimal token of 1000e18 units must not read
"1000 ETH" in `market task status`, and `market trainer withdraw` (per task: each task pays in its own
token) must be able to pay it out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from market_app import cli
from tests.conftest import Market
from tests.contracts.test_erc20 import create, run_round, token


def test_token_amounts_are_units_of_the_token_and_withdrawable(anvil_market: Market, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    m = anvil_market
    amount = 1000 * 10**18
    tok = token(m, "TestToken", amount)
    task_id = create(m, tok, amount)
    run_round(m, task_id, [10_000, 0])  # the task takes 2 trainers: both submit, trainer 0 earns it all
    chain = ["--rpc", m.chain.w3.provider.endpoint_uri, "--contract", m.contract.address]  # type: ignore[attr-defined]

    assert cli.main(["task", "status", str(task_id), *chain]) == 0
    status = capsys.readouterr().out
    assert f"units of token {tok.address}" in status and "1000.000000 ETH" not in status

    key = tmp_path / "trainer.key"
    key.write_text(m.trainers[0].key.hex())
    assert cli.main(["trainer", "withdraw", "--key-file", str(key), "--task", str(task_id), *chain]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"task {task_id}: withdrew {amount} units of token {tok.address} to {m.trainers[0].address}"
    assert tok.functions.balanceOf(m.trainers[0].address).call() == amount
