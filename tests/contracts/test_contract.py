"""The escrow contract's rules, on the in-process EVM: roles, windows, crediting, liveness."""

from __future__ import annotations

import pytest

from market.cid import compute_cid
from market.errors import ContractRevert, UnknownTaskError
from tests.conftest import Market

SPEC = compute_cid(b"spec")
VALC = b"\x11" * 32


def create(m: Market, rounds: int = 2, reward: int = 10**18, max_trainers: int = 3, **kw: int) -> int:
    task_id, _ = m.contract.create_task(
        m.owner, spec_cid=SPEC, initial_model_cid=SPEC, validation_commitment=VALC, aggregator=m.aggregator.address,
        rounds=rounds, reward_wei=reward, max_trainers=max_trainers, **kw,
    )
    return task_id


def join_all(m: Market, task_id: int, n: int = 3) -> None:
    for t in m.trainers[:n]:
        m.contract.join(t, task_id)


def submit_all(m: Market, task_id: int, round_: int, n: int = 3) -> None:
    for i, t in enumerate(m.trainers[:n]):
        m.contract.submit_update(t, task_id, round_, compute_cid(bytes([round_, i])), b"\x01" * 32)


def post(m: Market, task_id: int, round_: int, bps: list[int]) -> None:
    m.contract.post_result(m.aggregator, task_id, round_, compute_cid(b"model"), compute_cid(b"receipt"), bps)


def assert_conserved(m: Market, task_id: int) -> None:
    t = m.contract.task(task_id)
    assert t.escrow + t.credited + t.refunded == t.reward


def revert_name(excinfo: pytest.ExceptionInfo[ContractRevert]) -> str:
    return excinfo.value.name


# ---------------------------------------------------------------- create
def test_create_task_escrows_the_reward(market: Market) -> None:
    task_id = create(market, reward=5 * 10**17)

    t = market.contract.task(task_id)

    assert (t.reward, t.escrow, t.rounds, t.current_round) == (5 * 10**17, 5 * 10**17, 2, 0)
    assert market.chain.balance(market.contract.address) == 5 * 10**17
    assert t.spec_cid == SPEC


@pytest.mark.parametrize(
    "kw, error",
    [
        ({"rounds": 0}, "MarketBadRounds"),
        ({"reward": 0}, "MarketRewardTooSmall"),
        ({"reward": 2, "rounds": 3}, "MarketRewardTooSmall"),
        ({"max_trainers": 0}, "MarketBadMaxTrainers"),
        ({"max_trainers": 257}, "MarketBadMaxTrainers"),
        ({"submit_window": 0}, "MarketBadWindows"),
    ],
)
def test_create_task_rejects_bad_parameters(market: Market, kw: dict[str, int], error: str) -> None:
    with pytest.raises(ContractRevert) as exc:
        create(market, **kw)
    assert revert_name(exc) == error


def test_owner_cannot_be_its_own_aggregator(market: Market) -> None:
    with pytest.raises(ContractRevert) as exc:
        market.contract.create_task(market.owner, spec_cid=SPEC, initial_model_cid=SPEC, validation_commitment=VALC,
                                    aggregator=market.owner.address, rounds=1, reward_wei=1)
    assert revert_name(exc) == "MarketRoleConflict"


def test_unknown_task_is_a_clear_error(market: Market) -> None:
    with pytest.raises(UnknownTaskError, match="unknown task 42"):
        market.contract.task(42)


# ------------------------------------------------------------------ join
def test_join_twice_reverts(market: Market) -> None:
    task_id = create(market)
    market.contract.join(market.trainers[0], task_id)
    with pytest.raises(ContractRevert) as exc:
        market.contract.join(market.trainers[0], task_id)
    assert revert_name(exc) == "MarketAlreadyJoined"


def test_aggregator_cannot_join_as_trainer(market: Market) -> None:
    task_id = create(market)
    with pytest.raises(ContractRevert) as exc:
        market.contract.join(market.aggregator, task_id)
    assert revert_name(exc) == "MarketRoleConflict"


def test_join_past_the_limit_reverts(market: Market) -> None:
    task_id = create(market, max_trainers=2)
    join_all(market, task_id, 2)
    with pytest.raises(ContractRevert) as exc:
        market.contract.join(market.trainers[2], task_id)
    assert revert_name(exc) == "MarketTaskFull"


# ---------------------------------------------------------------- submit
def test_submit_without_joining_reverts(market: Market) -> None:
    task_id = create(market)
    with pytest.raises(ContractRevert) as exc:
        market.contract.submit_update(market.outsider, task_id, 0, compute_cid(b"u"), b"\x00" * 32)
    assert revert_name(exc) == "MarketNotJoined"


def test_late_submission_reverts_with_the_deadline(market: Market) -> None:
    task_id = create(market, submit_window=100)
    join_all(market, task_id)
    market.chain.advance_time(101)
    with pytest.raises(ContractRevert, match="too late: submissions for this round closed") as exc:
        market.contract.submit_update(market.trainers[0], task_id, 0, compute_cid(b"u"), b"\x00" * 32)
    assert revert_name(exc) == "MarketSubmissionClosed"


def test_second_submission_in_a_round_reverts(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id)
    market.contract.submit_update(market.trainers[0], task_id, 0, compute_cid(b"a"), b"\x00" * 32)
    with pytest.raises(ContractRevert) as exc:
        market.contract.submit_update(market.trainers[0], task_id, 0, compute_cid(b"b"), b"\x00" * 32)
    assert revert_name(exc) == "MarketAlreadySubmitted"


def test_submission_for_another_round_reverts(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id)
    with pytest.raises(ContractRevert) as exc:
        market.contract.submit_update(market.trainers[0], task_id, 1, compute_cid(b"a"), b"\x00" * 32)
    assert revert_name(exc) == "MarketWrongRound"


def test_submissions_are_read_back_and_match_the_digest(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id)
    submit_all(market, task_id, 0)

    subs = market.contract.submissions(task_id, 0)

    assert [s.trainer for s in subs] == [t.address for t in market.trainers[:3]]
    assert subs[1].cid == compute_cid(bytes([0, 1]))


# ---------------------------------------------------------------- result
def test_result_credits_rounded_down_and_remainder_to_owner(market: Market) -> None:
    task_id = create(market, rounds=1, reward=1_000_003)
    join_all(market, task_id)
    submit_all(market, task_id, 0)

    post(market, task_id, 0, [3333, 3333, 3334])

    owed = [market.contract.owed(t.address) for t in market.trainers[:3]]
    assert owed == [333_300, 333_300, 333_401]  # floor(1_000_003 * bps / 10_000)
    assert market.contract.task(task_id).refundable == 1_000_003 - sum(owed)
    assert_conserved(market, task_id)
    assert market.contract.task(task_id).finished


def test_result_from_anyone_but_the_aggregator_reverts(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id)
    submit_all(market, task_id, 0)
    with pytest.raises(ContractRevert) as exc:
        market.contract.post_result(market.owner, task_id, 0, compute_cid(b"m"), compute_cid(b"r"), [10000, 0, 0])
    assert revert_name(exc) == "MarketNotAggregator"


def test_result_posted_twice_reverts(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id)
    submit_all(market, task_id, 0)
    post(market, task_id, 0, [5000, 5000, 0])
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [5000, 5000, 0])
    assert revert_name(exc) == "MarketWrongRound"


@pytest.mark.parametrize("bps, error", [([5000, 4000, 0], "MarketBadBasisPoints"), ([5000, 5000], "MarketWrongLength")])
def test_result_with_bad_basis_points_reverts(market: Market, bps: list[int], error: str) -> None:
    task_id = create(market)
    join_all(market, task_id)
    submit_all(market, task_id, 0)
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, bps)
    assert revert_name(exc) == error
    assert market.contract.task(task_id).current_round == 0


def test_result_before_submissions_close_reverts(market: Market) -> None:
    task_id = create(market)
    join_all(market, task_id)
    submit_all(market, task_id, 0, n=2)  # one joined trainer has not submitted, window still open
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [5000, 5000])
    assert revert_name(exc) == "MarketSubmissionsOpen"


def test_result_after_its_window_reverts(market: Market) -> None:
    task_id = create(market, submit_window=100, result_window=100)
    join_all(market, task_id)
    submit_all(market, task_id, 0)
    market.chain.advance_time(201)
    with pytest.raises(ContractRevert) as exc:
        post(market, task_id, 0, [5000, 5000, 0])
    assert revert_name(exc) == "MarketResultWindowClosed"


def test_all_zero_result_refunds_the_pool(market: Market) -> None:
    task_id = create(market, rounds=2, reward=1000)
    join_all(market, task_id)
    submit_all(market, task_id, 0)

    post(market, task_id, 0, [0, 0, 0])

    assert market.contract.task(task_id).refundable == 500
    assert market.contract.task(task_id).current_round == 1
    assert_conserved(market, task_id)


# -------------------------------------------------------------- liveness
def test_fallback_splits_equally_when_the_aggregator_is_silent(market: Market) -> None:
    task_id = create(market, rounds=1, reward=1000, submit_window=100, result_window=100)
    join_all(market, task_id)
    submit_all(market, task_id, 0)
    with pytest.raises(ContractRevert) as exc:
        market.contract.settle_without_result(market.trainers[0], task_id)
    assert revert_name(exc) == "MarketResultWindowOpen"
    market.chain.advance_time(201)

    market.contract.settle_without_result(market.trainers[0], task_id)

    assert [market.contract.owed(t.address) for t in market.trainers[:3]] == [333, 333, 333]
    assert market.contract.task(task_id).refundable == 1
    assert market.contract.round_info(task_id, 0).settlement == "fallback"
    assert_conserved(market, task_id)


def test_round_nobody_submitted_to_is_refunded(market: Market) -> None:
    task_id = create(market, rounds=2, reward=1000, submit_window=100, result_window=100)
    market.chain.advance_time(201)

    market.contract.settle_without_result(market.outsider, task_id)

    assert market.contract.task(task_id).refundable == 500
    assert market.contract.round_info(task_id, 0).settlement == "refunded"


def test_owner_reclaims_unused_pools_only_when_nobody_trains(market: Market) -> None:
    task_id = create(market, rounds=3, reward=999, submit_window=100)
    with pytest.raises(ContractRevert) as exc:
        market.contract.reclaim_unused(market.owner, task_id)
    assert revert_name(exc) == "MarketSubmissionsOpen"
    market.chain.advance_time(101)
    with pytest.raises(ContractRevert) as exc2:
        market.contract.reclaim_unused(market.outsider, task_id)
    assert revert_name(exc2) == "MarketNotOwner"

    market.contract.reclaim_unused(market.owner, task_id)

    t = market.contract.task(task_id)
    assert (t.escrow, t.refunded, t.finished) == (0, 999, True)


def test_owner_cannot_reclaim_a_round_with_submissions(market: Market) -> None:
    task_id = create(market, rounds=2, submit_window=100)
    join_all(market, task_id, 1)
    market.contract.submit_update(market.trainers[0], task_id, 0, compute_cid(b"u"), b"\x00" * 32)
    market.chain.advance_time(101)
    with pytest.raises(ContractRevert) as exc:
        market.contract.reclaim_unused(market.owner, task_id)
    assert revert_name(exc) == "MarketRoundHasSubmissions"


# -------------------------------------------------------------- withdraw
def test_withdrawing_twice_pays_once(market: Market) -> None:
    task_id = create(market, rounds=1, reward=10**18)
    join_all(market, task_id)
    submit_all(market, task_id, 0)
    post(market, task_id, 0, [10000, 0, 0])
    trainer = market.trainers[0]
    before = market.chain.balance(trainer.address)

    paid = market.contract.withdraw(trainer)
    with pytest.raises(ContractRevert) as exc:
        market.contract.withdraw(trainer)

    assert paid == 10**18
    assert revert_name(exc) == "MarketNothingToWithdraw"
    assert 0 < market.chain.balance(trainer.address) - before <= 10**18
    assert market.chain.balance(market.contract.address) == 0


def test_pools_add_up_to_the_reward(market: Market) -> None:
    task_id = create(market, rounds=3, reward=10)
    pools = [market.contract.round_pool(task_id, r) for r in range(3)]
    assert pools == [3, 3, 4]  # floor(10*(r+1)/3) - floor(10*r/3)


def test_round_pools_computed_off_chain_equal_the_contracts(market: Market) -> None:
    for reward, rounds in ((10**18, 3), (7, 5), (4, 4), (10**18 + 1, 7)):
        task_id, _ = market.contract.create_task(market.owner, spec_cid=SPEC, initial_model_cid=SPEC, validation_commitment=VALC,
                                                  aggregator=market.aggregator.address, rounds=rounds, reward_wei=reward)
        info = market.contract.task(task_id)

        pools = [info.round_pool(r) for r in range(rounds)]

        assert pools == [market.contract.round_pool(task_id, r) for r in range(rounds)]
        assert sum(pools) == reward
