"""Gas used by each contract entry point, measured on a real Anvil.

    python bench/gas.py --json out.json

Writes {"submitUpdate": int, "postResult": {"4": int, "16": int, "64": int},
"withdraw": int, "createTask": int} (gas used; postResult keyed by trainers per
round, without proof verification) plus a "detail" object, and prints a table
against the budgets. Every number is the worst case seen: round 0, when every
storage slot a trainer touches is written for the first time.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from market.chain.client import Chain  # noqa: E402
from market.cid import compute_cid  # noqa: E402
from market.chain.contract import MarketContract  # noqa: E402
from market.chain.devchain import AnvilProcess, dev_accounts  # noqa: E402

BUDGETS = {"submitUpdate": 80_000, "withdraw": 40_000}
BLOCK_GAS_LIMIT = 30_000_000


def post_result_budget(n: int) -> int:
    return 60_000 + 30_000 * n


def measure(sizes: list[int]) -> dict:
    n_max = max(sizes)
    accounts = dev_accounts(n_max + 2)
    out: dict = {"postResult": {}, "detail": {"submitUpdate_round0": [], "submitUpdate_round1": [], "postResult_round1": {}}}
    with AnvilProcess(accounts=n_max + 2) as anvil:
        chain = Chain.connect(anvil.rpc_url)
        market = MarketContract.deploy(chain, accounts[0])
        owner, aggregator, trainers = accounts[0], accounts[1], accounts[2:]
        submit_gas: list[int] = []
        withdraw_gas = 0
        create_gas = 0
        for n in sizes:
            task_id, receipt = market.create_task(
                owner, spec_cid=compute_cid(b"spec"), initial_model_cid=compute_cid(b"init"), validation_commitment=b"\x01" * 32,
                aggregator=aggregator.address, rounds=2, reward_wei=10**18, max_trainers=n,
            )
            create_gas = max(create_gas, int(receipt["gasUsed"]))
            for t in trainers[:n]:
                market.join(t, task_id)
            bps = [10_000 // n] * n
            bps[-1] += 10_000 - sum(bps)
            for r in range(2):
                gas_r = []
                for i, t in enumerate(trainers[:n]):
                    rc = market.submit_update(t, task_id, r, compute_cid(f"{task_id}-{r}-{i}".encode()), b"\x02" * 32)
                    gas_r.append(int(rc["gasUsed"]))
                out["detail"][f"submitUpdate_round{r}"].append(max(gas_r))
                submit_gas += gas_r
                rc = market.post_result(aggregator, task_id, r, compute_cid(b"m%d" % r), compute_cid(b"r%d" % r), bps)
                key = "postResult" if r == 0 else None
                if key:
                    out["postResult"][str(n)] = int(rc["gasUsed"])
                else:
                    out["detail"]["postResult_round1"][str(n)] = int(rc["gasUsed"])
            for t in trainers[:n]:
                rc = chain.transact(t, market.c.functions.withdraw("0x" + "00" * 20))
                withdraw_gas = max(withdraw_gas, int(rc["gasUsed"]))
        out["submitUpdate"] = max(submit_gas)
        out["withdraw"] = withdraw_gas
        out["createTask"] = create_gas
        out["detail"]["machine"] = f"{platform.machine()} {platform.processor() or ''}".strip()
        out["detail"]["chain"] = "anvil " + anvil.rpc_url
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--sizes", default="4,16,64", help="trainers per round to measure postResult at")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    res = measure(sizes)
    rows = [("createTask", res["createTask"], None), ("submitUpdate", res["submitUpdate"], BUDGETS["submitUpdate"]),
            ("withdraw", res["withdraw"], BUDGETS["withdraw"])]
    rows += [(f"postResult n={n}", g, post_result_budget(int(n))) for n, g in res["postResult"].items()]
    ok = True
    print(f"{'entry point':<20}{'gas used':>12}{'budget':>12}")
    for name, gas, budget in rows:
        flag = "" if budget is None else ("  ok" if gas <= budget else "  OVER")
        ok &= budget is None or gas <= budget
        print(f"{name:<20}{gas:>12,}{'' if budget is None else f'{budget:>12,}'}{flag}")
    biggest = max(res["postResult"].values())
    print(f"largest postResult uses {100 * biggest / BLOCK_GAS_LIMIT:.1f}% of a {BLOCK_GAS_LIMIT:,}-gas block")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
