"""Gas used by each contract entry point of a commit–reveal round, measured on a real Anvil (or the
in-process EVM with ``--chain tester``).

    python bench/gas.py --json out.json

Writes {"commit": int, "reveal": int, "postResult": {"4": int, "16": int, "64": int}, "withdraw": int,
"createTask": int, "join": int} (gas used) plus the first round's numbers under ``commit_round0``,
``reveal_round0`` and ``postResult_round0``, the final withdrawal (credits plus the stake returned) under
``withdraw_final``, and a ``detail`` object; prints each goal with PASS or FAIL.

Every task takes a realistic stake (0.01 ETH) and uses the shortest windows. ``commit``, ``reveal`` and
``postResult`` are measured in a steady-state round (round 1: every slot a trainer touches was written
in round 0); each number is the largest seen over every trainer and every size. ``reveal`` includes
the last reveal of the round, which also seals it. ``withdraw`` is a trainer's mid-task withdrawal
of its credits; ``withdraw_final`` the one after the task ended, which also returns the stake.
``postResult`` runs without proof verification, every committer revealed and none is marked lost.

``draw`` is the registry's draw of a panel of 3 and its backup (the view every commitment, vote and settlement
of a round calls; eth_estimateGas, the 21,000 of a transaction included), the most over 16 seeds: with the
registry's 4 members only (``dead_0``), after a flood of ``FLOOD`` throwaway members registered and left
(``dead_left``), and once their bonds were withdrawn (``dead_withdrawn``). ``--flood 0`` skips it.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from eth_utils import keccak

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from market.chain.client import Chain  # noqa: E402
from market.chain.contract import MarketContract, commit_hash  # noqa: E402
from market.chain.devchain import AnvilProcess, dev_accounts  # noqa: E402
from market.cid import compute_cid  # noqa: E402

STAKE = 10**16
COMMIT_REVEAL_BUDGET = 120_000
WITHDRAW_BUDGET = 40_000
BLOCK_GAS_LIMIT = 30_000_000
WINDOWS = {"submit_window": 60, "reveal_window": 30, "result_window": 60}
FLOOD = 1_000  # throwaway members of the draw flood (the registry holds at most 1,024 entries)
DRAW_SEEDS = 16


def post_result_budget(n: int) -> int:
    return 60_000 + 30_000 * n


def _advance_to(chain: Chain, when: int) -> None:
    gap = when - chain.clock()
    if gap > 0:
        chain.advance_time(gap)


def _round(chain: Chain, market: MarketContract, task_id: int, r: int, trainers: list[Any],
           aggregator: Any, votes: int = 1) -> tuple[list[int], list[int], int]:
    """Play round ``r`` with every trainer (the task is full, so commits close at the last commit and the
    last reveal seals the round); return the commit gases, the reveal gases and postResult's gas (with
    ``votes`` > 1, the first ``votes`` drawn panel members post, and the gas is of each post, in order)."""
    _advance_to(chain, market.task(task_id).opens_at(r))
    secrets = []
    commits = []
    for i, t in enumerate(trainers):
        cid = compute_cid(f"update {task_id}-{r}-{i}".encode())
        commitment, salt = keccak(text=f"c{task_id}-{r}-{i}"), keccak(text=f"s{task_id}-{r}-{i}")
        secrets.append((cid, commitment, salt))
        rc = market.commit(t, task_id, r, commit_hash(cid, commitment, salt, t.address, task_id, r))
        commits.append(int(rc["gasUsed"]))
    reveals = []
    for t, (cid, commitment, salt) in zip(trainers, secrets):
        reveals.append(int(market.reveal(t, task_id, r, cid, commitment, salt)["gasUsed"]))
    n = len(trainers)
    bps = [10_000 // n] * n
    bps[-1] += 10_000 - sum(bps)
    seed = market.round_seed(task_id)
    if votes > 1:  # every panel member commits to its result (the last commitment opens the votes), then votes
        panel, _ = market.panel(task_id, seed=seed)
        by = {a.address: a for a in aggregator}
        vote_commits = [int(market.commit_vote(by[m], task_id, r, compute_cid(b"model %d" % r), bps,
                                               seed=seed)["gasUsed"]) for m in panel]
        posts = [int(market.post_result(by[m], task_id, r, compute_cid(b"model %d" % r), compute_cid(b"receipt %d" % r),
                                        bps, seed=seed)["gasUsed"]) for m in panel[:votes]]
        return commits, reveals, (vote_commits, posts)  # type: ignore[return-value]
    rc = market.post_result(aggregator, task_id, r, compute_cid(b"model %d" % r), compute_cid(b"receipt %d" % r), bps,
                            seed=seed)
    return commits, reveals, int(rc["gasUsed"])


def _draw_gas(chain: Chain, market: MarketContract, owner: str) -> int:
    """The most gas a draw of a panel of 3 and its backup takes, as of the latest block, over DRAW_SEEDS seeds."""
    at = chain.w3.eth.block_number
    fns = [market.registry.c.functions.draw(keccak(b"draw" + i.to_bytes(4, "big")), at, 4, owner) for i in range(DRAW_SEEDS)]
    return max(int(fn.estimate_gas({"from": owner})) for fn in fns)


def measure_flood(chain: Chain, market: MarketContract, owner: Any, throwaways: list[Any]) -> dict[str, int]:
    """Draw gas before and after ``throwaways`` register and leave (then withdraw): what dead entries add to a draw."""
    out = {"members": market.registry.active_count(), "dead": len(throwaways), "dead_0": _draw_gas(chain, market, owner.address)}
    for a in throwaways:
        market.registry.register(a)
    for a in throwaways:
        market.registry.exit(a)
    chain.advance_time(1)
    out["dead_left"] = _draw_gas(chain, market, owner.address)
    chain.advance_time(int(chain.call(market.registry.c.functions.exitDelay())) + 1)
    for a in throwaways:
        market.registry.withdraw_bond(a)
    chain.advance_time(1)
    out["dead_withdrawn"] = _draw_gas(chain, market, owner.address)
    return out


def measure(sizes: list[int], chain_kind: str = "anvil", flood: int = FLOOD) -> dict[str, Any]:
    n_max = max(sizes)
    accounts = dev_accounts(n_max + 4 + flood)  # the owner, the aggregator, the trainers, two more aggregators, throwaways
    out: dict[str, Any] = {"postResult": {}, "postResult_round0": {}, "detail": {}}
    proc = AnvilProcess(accounts=n_max + 4 + flood) if chain_kind == "anvil" else None
    try:
        if proc is not None:
            proc.start()
            chain = Chain.connect(proc.rpc_url)
        else:
            chain = Chain.tester()
            chain.fund(accounts, 10**20)
        market = MarketContract.deploy(chain, accounts[0])
        owner, aggregator, trainers = accounts[0], accounts[1], accounts[2:n_max + 2]
        extra, throwaways = accounts[n_max + 2:n_max + 4], accounts[n_max + 4:]
        market.registry.register(aggregator)  # the registry's one member: every round's panel of one
        gas: dict[str, list[int]] = {k: [] for k in ("createTask", "join", "commit", "reveal", "commit_round0",
                                                     "reveal_round0", "withdraw", "withdraw_final")}
        for n in sizes:
            task_id, receipt = market.create_task(
                owner, spec_cid=compute_cid(b"spec"), initial_model_cid=compute_cid(b"init"),
                validation_commitment=b"\x01" * 32, rounds=3, reward_wei=10**18,
                max_trainers=n, stake_wei=STAKE, **WINDOWS,
            )
            gas["createTask"].append(int(receipt["gasUsed"]))
            info = market.task(task_id)
            for t in trainers[:n]:
                gas["join"].append(int(market.join(t, task_id, info)["gasUsed"]))
            commits, reveals, post = _round(chain, market, task_id, 0, trainers[:n], aggregator)
            gas["commit_round0"] += commits
            gas["reveal_round0"] += reveals
            out["postResult_round0"][str(n)] = post
            out["detail"].setdefault("first_reveal_round0", []).append(reveals[0])
            commits, reveals, post = _round(chain, market, task_id, 1, trainers[:n], aggregator)
            gas["commit"] += commits
            gas["reveal"] += reveals
            out["postResult"][str(n)] = post
            out["detail"].setdefault("first_reveal_round1", []).append(reveals[0])
            out["detail"].setdefault("sealing_reveal_round1", []).append(reveals[-1])
            for t in trainers[:n]:  # mid-task: the credits of rounds 0 and 1
                rc = chain.transact(t, market.c.functions.withdraw(task_id))
                gas["withdraw"].append(int(rc["gasUsed"]))
            _round(chain, market, task_id, 2, trainers[:n], aggregator)
            for t in trainers[:n]:  # the task ended: round 2's credit and the stake
                rc = chain.transact(t, market.c.functions.withdraw(task_id))
                gas["withdraw_final"].append(int(rc["gasUsed"]))
        # a panel of 3 with a quorum of 2 (the registry now holds 3): the first vote, then the deciding one
        for a in extra:
            market.registry.register(a)
        n = min(16, n_max)
        task_id, _ = market.create_task(
            owner, spec_cid=compute_cid(b"spec"), initial_model_cid=compute_cid(b"init"), validation_commitment=b"\x01" * 32,
            rounds=2, reward_wei=10**18, max_trainers=n, stake_wei=STAKE, panel=3, quorum=2, fee_bps=100,
            **{**WINDOWS, "result_window": 480})  # a quorum's shortest result window
        info = market.task(task_id)
        for t in trainers[:n]:
            market.join(t, task_id, info)
        _round(chain, market, task_id, 0, trainers[:n], [aggregator, *extra], votes=2)
        _c, _r, (vote_commits, posts) = _round(chain, market, task_id, 1, trainers[:n], [aggregator, *extra],  # type: ignore[misc]
                                               votes=2)
        out["postResult_panel3"] = {"n": n, "commit_vote": vote_commits[0], "first_vote": posts[0],
                                    "deciding_vote": posts[1]}
        if throwaways:
            out["draw"] = measure_flood(chain, market, owner, throwaways)
        for key, values in gas.items():
            out[key] = max(values)
        out["commit_plus_reveal"] = max(c + r for c, r in zip(gas["commit"], gas["reveal"]))
        out["commit_plus_reveal_round0"] = max(c + r for c, r in zip(gas["commit_round0"], gas["reveal_round0"]))
        out["detail"]["stake_wei"] = STAKE
        out["detail"]["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
        out["detail"]["chain"] = "anvil" if proc is not None else "in-process EVM (eth-tester, py-evm)"
    finally:
        if proc is not None:
            proc.stop()
    return out


def goals(res: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(goal, gas used, budget) for every goal of the issue: a trainer's commit + reveal, a withdrawal,
    postResult by trainers per round."""
    rows = [("commit + reveal (round >= 1)", res["commit_plus_reveal"], COMMIT_REVEAL_BUDGET),
            ("commit + reveal (round 0)", res["commit_plus_reveal_round0"], COMMIT_REVEAL_BUDGET),
            ("withdraw (credits)", res["withdraw"], WITHDRAW_BUDGET)]
    rows += [(f"postResult n={n}", g, post_result_budget(int(n))) for n, g in res["postResult"].items()]
    rows += [(f"postResult n={n} (round 0)", g, post_result_budget(int(n))) for n, g in res["postResult_round0"].items()]
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--sizes", default="4,16,64", help="trainers per round to measure postResult at")
    ap.add_argument("--chain", choices=["anvil", "tester"], default="anvil", help="where to measure")
    ap.add_argument("--flood", type=int, default=FLOOD, help="throwaway members of the draw flood (0: skip it)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    res = measure(sizes, args.chain, args.flood)
    print(f"{'entry point':<34}{'gas used':>12}")
    for name in ("createTask", "join", "commit", "reveal", "commit_round0", "reveal_round0", "withdraw",
                 "withdraw_final"):
        print(f"{name:<34}{res[name]:>12,}")
    ok = True
    print(f"\n{'goal':<34}{'gas used':>12}{'budget':>12}")
    for name, used, budget in goals(res):
        passed = used <= budget
        ok &= passed
        print(f"{name:<34}{used:>12,}{budget:>12,}  {'PASS' if passed else 'FAIL'}")
    final = res["withdraw_final"]
    print(f"{'(info) withdraw, task ended':<34}{final:>12,}{WITHDRAW_BUDGET:>12,}  "
          f"{'within' if final <= WITHDRAW_BUDGET else 'over'}: it also returns the stake")
    p3 = res["postResult_panel3"]
    print(f"{'(info) panel of 3, n=' + str(p3['n']):<34}commitment {p3['commit_vote']:,}, first vote {p3['first_vote']:,}, "
          f"deciding vote {p3['deciding_vote']:,}")
    if "draw" in res:
        d = res["draw"]
        print(f"{'(info) draw, panel of 3 + backup':<34}{d['members']} members: {d['dead_0']:,}; {d['dead']:,} more registered "
              f"and left: {d['dead_left']:,}; their bonds withdrawn: {d['dead_withdrawn']:,}")
    biggest = max(res["postResult_round0"].values())
    print(f"largest postResult uses {100 * biggest / BLOCK_GAS_LIMIT:.1f}% of a {BLOCK_GAS_LIMIT:,}-gas block")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
