"""RoundVerifier derives each round size's Groth16 selector itself (nobody can point a size at another
function), and it is the one snarkjs gives the verifier of that size (``market.zk.deploy.selector``)."""

from __future__ import annotations

import pytest

from market.chain.client import Chain
from market.chain.compile import load_artifact
from market.chain.devchain import dev_accounts
from market.errors import ChainError
from market.zk.deploy import selector


def _round_verifier(chain: Chain, ns: list[int]) -> object:
    account = dev_accounts(1)[0]
    chain.fund([account], 10**18)
    placeholder = chain.deploy(account, load_artifact("MockVerifier"), True, True)
    address = chain.deploy(account, load_artifact("RoundVerifier"), 8, ns, [placeholder] * len(ns))
    return chain.w3.eth.contract(address=address, abi=load_artifact("RoundVerifier")["abi"])


def test_each_size_gets_the_selector_of_its_public_input_count() -> None:
    chain = Chain.tester()
    ns = [1, 2, 3, 17, 18, 19, 36, 37, 64, 255, 256]
    rv = _round_verifier(chain, ns)
    for n in ns:
        assert bytes(chain.call(rv.functions.selectorFor(n))) == selector(n), n
    assert len({selector(n) for n in ns}) == len(ns)  # distinct sizes never share a selector
    assert len(chain.call(rv.functions.components())) == len(ns)


@pytest.mark.parametrize("ns", [[0], [257]])
def test_a_size_outside_1_to_256_is_refused(ns: list[int]) -> None:
    with pytest.raises(ChainError, match="reverted"):
        _round_verifier(Chain.tester(), ns)
