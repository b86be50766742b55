"""Revert messages come from the contract's NatSpec (the artifact's userdoc), not a hand-copied table."""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from market.chain.client import MESSAGES, ErrorDecoder
from market.chain.compile import load_artifact

DEADLINE = 1_700_000_000
ALICE = "0x" + "ab" * 20


def error_data(sig: str, types: list[str], values: list[object]) -> bytes:
    return keccak(text=sig)[:4] + abi_encode(types, values)


def market_decoder() -> ErrorDecoder:
    art = load_artifact("ContributionMarket")
    decoder = ErrorDecoder()
    decoder.add(art["abi"], art["userdoc"])
    return decoder


def test_a_contract_error_reads_its_natspec_notice_from_the_artifact() -> None:
    assert "MarketSubmissionClosed" not in MESSAGES
    data = error_data("MarketSubmissionClosed(uint256)", ["uint256"], [DEADLINE])

    err = market_decoder().decode(data)

    assert err.name == "MarketSubmissionClosed"
    assert str(err) == f"too late: submissions for this round closed at unix time {DEADLINE} [MarketSubmissionClosed]"


def test_without_the_userdoc_the_same_error_has_no_sentence() -> None:
    data = error_data("MarketSubmissionClosed(uint256)", ["uint256"], [DEADLINE])

    err = ErrorDecoder(load_artifact("ContributionMarket")["abi"]).decode(data)

    assert str(err) == f"MarketSubmissionClosed({DEADLINE}) [MarketSubmissionClosed]"


def test_address_arguments_are_checksummed_in_the_notice() -> None:
    data = error_data("MarketNotJoined(address)", ["address"], [ALICE])

    err = market_decoder().decode(data)

    assert str(err) == (f"{to_checksum_address(ALICE)} has not joined this task (run `market trainer join` first) "
                        "[MarketNotJoined]")


def test_every_contract_error_has_a_message_and_only_library_errors_stay_in_the_table() -> None:
    art = load_artifact("ContributionMarket")
    notices = art["userdoc"]["errors"]
    for item in art["abi"]:
        if item["type"] != "error":
            continue
        sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
        assert (sig in notices) != (item["name"] in MESSAGES), sig
    assert set(MESSAGES) == {"ReentrancyGuardReentrantCall", "SafeERC20FailedOperation", "FailedCall",
                             "InsufficientBalance"}


def test_library_errors_still_read_from_the_table() -> None:
    data = error_data("SafeERC20FailedOperation(address)", ["address"], [ALICE])

    err = market_decoder().decode(data)

    assert str(err) == f"the token {to_checksum_address(ALICE)} refused the transfer [SafeERC20FailedOperation]"


def test_an_abi_added_again_without_its_userdoc_keeps_the_notice() -> None:
    decoder = market_decoder()
    decoder.add(load_artifact("ContributionMarket")["abi"])

    data = error_data("MarketBadBasisPoints(uint256)", ["uint256"], [9_999])
    err = decoder.decode(data)

    assert str(err) == str(market_decoder().decode(data))  # the notice, not the bare signature
    assert str(err).startswith("basis points sum to 9999, not 10000") and str(err).endswith(" [MarketBadBasisPoints]")
