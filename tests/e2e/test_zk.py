"""Verifiable rounds end to end on Anvil: sketch commitments, the Groth16 proof checked by the
task's RoundVerifier before anything is credited, tampering rejected, `market verify`.

The first run builds the development setup for rounds of 4 and 5 trainers (~2 min on a fresh
machine, cached in $MARKET_ZK_DIR or ~/.cache/poc-market/zk; `make zk-setup` builds it ahead).
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3

from aggregator.proof import prove_round
from aggregator.service import Aggregator, lost_mask
from market.data import digits_splits, example_splits
from market.errors import ChainError
from market.store import put_json
from market.task import load_task
from market.zk import statement as zs
from market.zk.poseidon import poseidon
from market_app.verify import verify_round
from simulator.environment import open_environment
from simulator.simulate import SimulateConfig, post_task
from tests.support.rounds import play_round
from trainer_node.node import TrainerNode

pytestmark = pytest.mark.zk


def test_statement_matches_payout_rules_on_random_inputs() -> None:
    rng = random.Random(7)
    for _ in range(20):
        n = rng.randint(3, 7)
        f = rng.randint(0, max(0, (n - 3) // 2))
        sk = [[rng.randint(-50, 50) for _ in range(16)] for _ in range(n)]
        d = zs.decide(sk, [rng.randrange(2**200) for _ in range(n)], f, zs.permutation(rng.randbytes(32), n))
        util = [rng.randint(0, 4096) for _ in d.coalitions]
        st = zs.settle(d, util, 1)  # raises if the circuit's payout and market/payout.py disagree
        assert sum(st.bps) == 10_000 and all(st.bps[i] == 0 for i in d.outliers)


def test_poseidon_known_answer() -> None:
    # circomlibjs buildPoseidon()([1, 2])
    assert poseidon([1, 2]) == 7853200120776062878684798364095072458815029376092732009249414926327459813530


def _joined(env: Any, cfg: SimulateConfig, splits: Any) -> tuple[int, Any, list[TrainerNode], Aggregator]:
    """``cfg``'s task posted on ``env`` and its trainers joined (the last one attacks, with ``cfg.attack``), and the
    aggregator that serves it (one key; the validation set of ``splits``)."""
    task_id, spec = post_task(env, env.accounts[0], cfg, splits.validation, 10**18)
    nodes = [TrainerNode(env.contract, env.store, a, s, attack=cfg.attack if i == cfg.trainers - 1 else None, seed=cfg.seed)
             for i, (a, s) in enumerate(zip(env.accounts[2:2 + cfg.trainers], splits.trainers))]
    for node in nodes:
        node.join(task_id)
    return task_id, spec, nodes, Aggregator(env.contract, env.store, env.accounts[1], splits.validation)


@pytest.fixture(scope="module")
def proof_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("zk")
    # sketch_f = 1: the circuit's Multi-Krum over the sketches leaves the attacker out (the default, 0, leaves
    # nobody out: an attacker is then paid nothing by its value and the model's rule)
    cfg = SimulateConfig(trainers=5, attackers=1, attack="sign_flip", rounds=3, robust="multikrum", f=1,
                         proof="groth16", sketch_f=1, chain="anvil", store_dir=str(tmp / "store"), seed=1)
    splits = digits_splits(5, "iid", 1)
    with open_environment(chain="anvil", n_accounts=9, store="local", store_dir=str(tmp / "store")) as env:
        task_id, spec, nodes, agg = _joined(env, cfg, splits)
        yield {"env": env, "task_id": task_id, "spec": spec, "nodes": nodes, "agg": agg, "validation": splits.validation}


def _prepared(ctx: dict[str, Any]) -> dict[str, Any]:
    """Everyone commits and reveals the current round (the last reveal seals it); the aggregator computes with
    the round's seed, stores and proves (posts nothing)."""
    env, task_id, agg = ctx["env"], ctx["task_id"], ctx["agg"]
    play_round(env, ctx["nodes"], task_id=task_id, post=False)
    view = load_task(env.contract, env.store, task_id)
    seed = env.contract.round_seed(task_id, view.info)
    outcome, model_cid, receipt = agg.compute_round(view)
    assert receipt.round_seed == "0x" + seed.hex()  # the proof's permutation is drawn from the round's seed
    receipt_cid = put_json(env.store, receipt.to_json())
    r = view.info.current_round
    proved = prove_round(env.contract, env.contract.round_snapshot(task_id, r, view.info), outcome, model_cid, receipt_cid)
    assert proved is not None
    return {"round": r, "outcome": outcome, "model": model_cid, "receipt": receipt, "receipt_cid": receipt_cid,
            "bps": list(receipt.bps_vector), "proof": proved.calldata, "proved": proved, "seed": seed,
            "lost_mask": lost_mask(receipt)}


def _post(ctx: dict[str, Any], p: dict[str, Any], bps: list[int] | None = None, proof: bytes | None = None,
          receipt_cid: str | None = None, task_id: int | None = None, seed: bytes | None = None) -> Any:
    env = ctx["env"]
    return env.contract.post_result(ctx["agg"].account, ctx["task_id"] if task_id is None else task_id, p["round"],
                                    p["model"], receipt_cid or p["receipt_cid"], p["bps"] if bps is None else bps,
                                    p["proof"] if proof is None else proof, seed=p["seed"] if seed is None else seed,
                                    lost_mask=p["lost_mask"])


def _credited_nothing(ctx: dict[str, Any], r: int) -> bool:
    return ctx["env"].contract.credited(ctx["task_id"], r) == {} and ctx["env"].contract.task(ctx["task_id"]).current_round == r


def test_tampered_results_are_rejected_on_chain_and_a_valid_one_credits(proof_env: dict[str, Any]) -> None:
    ctx = proof_env
    p = _prepared(ctx)
    attacker = ctx["nodes"][-1].address
    addresses = [s.trainer for s in sorted(ctx["env"].contract.submissions(ctx["task_id"], p["round"]), key=lambda s: s.index)]
    assert p["receipt"].outliers == [attacker] and p["bps"][addresses.index(attacker)] == 0

    # a tampered basis-point vector (two honest trainers' points moved, still summing to 10,000)
    bps = list(p["bps"])
    bps[0], bps[1] = bps[0] - 100, bps[1] + 100
    with pytest.raises(ChainError, match="MarketInvalidProof"):
        _post(ctx, p, bps=bps)
    # a swapped outlier: the attacker paid an honest trainer's points, that trainer zeroed
    swapped = list(p["bps"])
    j = addresses.index(attacker)
    swapped[j], swapped[0] = swapped[0], 0
    with pytest.raises(ChainError, match="MarketInvalidProof"):
        _post(ctx, p, bps=swapped)
    # the same proof for another receipt (the binding covers the receipt CID)
    other = put_json(ctx["env"].store, {**p["receipt"].to_json(), "note": "another receipt"})
    with pytest.raises(ChainError, match="MarketInvalidProof"):
        _post(ctx, p, receipt_cid=other)
    assert _credited_nothing(ctx, p["round"])

    # the round is still completable by the valid result
    _post(ctx, p)
    credited = ctx["env"].contract.credited(ctx["task_id"], p["round"])
    assert attacker not in credited and sum(credited.values()) > 0
    ctx["round0"] = p


def test_proof_replayed_in_the_next_round_is_rejected_and_verify_passes(proof_env: dict[str, Any]) -> None:
    ctx = proof_env
    first = ctx["round0"]
    p = _prepared(ctx)
    assert p["seed"] != first["seed"]  # each round's permutation is drawn from its own seed
    with pytest.raises(ChainError, match="MarketWrongSeed"):  # the previous round's seed is not this round's
        _post(ctx, p, seed=first["seed"])
    with pytest.raises(ChainError, match="MarketInvalidProof"):
        _post(ctx, p, bps=first["bps"], proof=first["proof"])
    assert _credited_nothing(ctx, p["round"])
    _post(ctx, p)
    rep = verify_round(ctx["env"].contract, ctx["env"].store, ctx["task_id"], first["round"], ctx["validation"])
    assert rep.ok, rep.checks
    # the commitments are re-checked with the rest of the rejections (sketch commitment and metadata binding)
    assert {name for name, _, _ in rep.checks} >= {"receipt", "submissions", "calldata", "payout", "input model",
                                                   "rejections", "replay", "statement", "proof"}


def test_verify_catches_a_forged_utility(proof_env: dict[str, Any]) -> None:
    ctx = proof_env
    p = _prepared(ctx)
    forged = copy.deepcopy(p["receipt"].to_json())
    forged["details"]["proof"]["utilities"][2] = (forged["details"]["proof"]["utilities"][2] + 400) % 4097
    # an aggregator that forges a utility must prove against the forged numbers to get paid
    from market.receipt import ProofInputs
    from market.zk.prover import encode_round_proof, prove
    from market.zk.setup import Shape, build

    dec = ProofInputs.model_validate(forged["details"]["proof"]).decision()
    assert dec is not None
    from market.cid import cid_digest

    view = load_task(ctx["env"].contract, ctx["env"].store, ctx["task_id"])
    st = zs.settle(dec, [int(u) for u in forged["details"]["proof"]["utilities"]], 0)
    slots = forged["details"]["proof"]["slots"]
    subs = ctx["env"].contract.submissions(ctx["task_id"], p["round"])
    bps = [dict(zip(slots, st.bps)).get(s.trainer, 0) for s in sorted(subs, key=lambda s: s.index)]
    forged["bps_vector"] = bps
    forged["bps"] = {s.trainer: b for s, b in zip(sorted(subs, key=lambda s: s.index), bps)}
    forged_cid = put_json(ctx["env"].store, forged)
    binding = zs.binding(ctx["env"].chain.chain_id, ctx["env"].contract.address, Web3.to_checksum_address(view.info.verifier),
                         ctx["task_id"], p["round"], cid_digest(p["model"]), cid_digest(forged_cid))
    st = zs.settle(dec, [int(u) for u in forged["details"]["proof"]["utilities"]], binding)
    proof = prove(build(Shape(dec.n, 16, dec.f)), st.witness)
    prev = ctx["env"].contract.digest_before(ctx["task_id"], p["round"])
    calldata = encode_round_proof(proof, prev, [(s.index, cid_digest(s.cid), s.commitment) for s in sorted(subs, key=lambda s: s.seq)],
                                  0, st.public[-1])
    _post(ctx, p, bps=bps, proof=calldata, receipt_cid=forged_cid)  # the chain accepts: it cannot evaluate models

    rep = verify_round(ctx["env"].contract, ctx["env"].store, ctx["task_id"], p["round"], ctx["validation"])
    failed = {name for name, ok, _ in rep.checks if not ok}
    # the replay recomputes the utilities; the receipt's own values (left as computed) do not give the forged bps
    assert failed == {"replay", "values"}, rep.checks


def test_simulate_report_fills_the_proof_field(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`market demo`'s way of settling: a proven round judged by a panel of 3 (quorum 2) whose members commit to
    their results before voting; it credits what the same round unproven credits."""
    from simulator.simulate import simulate

    store = tmp_path_factory.mktemp("zk-sim") / "store"
    cfg = SimulateConfig(trainers=5, attackers=1, attack="sign_flip", rounds=1, robust="multikrum", f=1,
                         proof="groth16", chain="anvil", store_dir=str(store), seed=2, panel=3, fee_bps=100)
    report = simulate(cfg)

    (entry,) = report["rounds"]
    assert len(entry["panel"]["drawn"]) == 3 and len(entry["panel"]["agreed"]) == 2 and int(entry["panel"]["fee_wei"]) > 0
    assert entry["panel"]["backup"] is not None  # the simulation registers a backup too
    assert len(entry["gas"]["panel_votes"]) == 4 + 2  # every drawn member's commitment (the backup's too), two votes
    attacker = report["trainers"][-1]["address"]
    assert entry["proof"]["system"] == "groth16" and entry["proof"]["verified_on_chain"] is True
    assert entry["proof"]["prove_s"] > 0 and entry["seconds"]["prove"] == entry["proof"]["prove_s"]
    # Multi-Krum over the sketches leaves nobody out by default (sketch_f = 0); the model's rule flags the
    # attacker, which is paid nothing
    assert entry["outliers"] == [] and entry["flagged"] == [attacker] and entry["credited_wei"][attacker] == "0"
    # and the proven round pays every trainer what the unproven default round pays (to within a basis point of
    # rounding: the circuit's integer values split by largest remainder)
    plain = simulate(cfg.model_copy(update={"proof": "none", "robust": "ccdrop",
                                            "store_dir": str(tmp_path_factory.mktemp("plain-sim") / "store")}))
    (unproven,) = plain["rounds"]
    assert unproven["proof"] is None and unproven["bps"].keys() == entry["bps"].keys()
    assert all(abs(unproven["bps"][a] - b) <= 1 for a, b in entry["bps"].items()), (unproven["bps"], entry["bps"])


def test_proof_from_another_task_is_rejected(proof_env: dict[str, Any]) -> None:
    ctx = proof_env
    env = ctx["env"]
    cfg = SimulateConfig(trainers=5, attackers=1, attack="sign_flip", rounds=1, robust="multikrum", f=1,
                         proof="groth16", chain="anvil", seed=1)
    tasks = [post_task(env, env.accounts[0], cfg, ctx["validation"], 10**18)[0] for _ in range(2)]
    for task in tasks:
        for node in ctx["nodes"]:
            node.join(task)
    first = {**ctx, "task_id": tasks[0]}
    p = _prepared(first)  # a valid proof for the first new task's round 0
    play_round(env, ctx["nodes"], task_id=tasks[1], post=False)  # the same updates' round 0 in the other task
    with pytest.raises(ChainError, match="MarketInvalidProof"):  # with the other task's own seed: only the proof is wrong
        _post(ctx, p, task_id=tasks[1], seed=env.contract.round_seed(tasks[1]))
    assert env.contract.credited(tasks[1], 0) == {} and env.contract.task(tasks[1]).current_round == 0
    _post(first, p)  # and it still settles its own round
    assert env.contract.task(tasks[0]).finished


def _market(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from market_app.cli.main import main

    code = main(argv)
    return code, capsys.readouterr().out


def test_zk_audit_checks_the_task_setup_and_a_fresh_contribution_is_not_the_deployed_code(
        proof_env: dict[str, Any], tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """`market zk audit` from the circuit's source to the task's deployed verifier and the market's allowlist;
    a phase-2 contribution is listed by the next audit, and its verifier is not the one the task uses."""
    from market.zk.setup import Shape, build

    env, task_id = proof_env["env"], proof_env["task_id"]
    chain = ["--task", str(task_id), "--rpc", env.chain.w3.provider.endpoint_uri, "--contract", env.contract.address, "--quiet"]
    code, out = _market(["zk", "audit", "--shape", "5:16:1", *chain], capsys)
    assert code == 0, out
    for line in ("ok   proving key", "ok   deployed", "ok   allowlist", "phase 2 contribution #1: dev", "warning: development setup"):
        assert line in out, out

    alice = tmp_path / "alice.zkey"
    code, out = _market(["zk", "contribute", str(build(Shape(5, 16, 1)).zkey), str(alice), "--name", "alice"], capsys)
    assert code == 0 and alice.is_file()
    published = out.split("publish its hash: ")[1].split()[0]
    assert len(published) == 128, out  # 64 bytes in hex

    code, out = _market(["zk", "audit", "--shape", "5:16:1", "--zkey", str(alice), *chain], capsys)
    assert code == 1, out
    assert "ok   proving key" in out and f"phase 2 contribution #2: alice  {published}" in out, out
    assert "FAIL deployed" in out and "setup FAILED: deployed" in out, out


def test_zk_audit_refuses_a_proving_key_of_another_circuit(capsys: pytest.CaptureFixture[str]) -> None:
    from market.zk.setup import Shape, build

    code, out = _market(["zk", "audit", "--shape", "4:16:0", "--zkey", str(build(Shape(5, 16, 0)).zkey), "--quiet"], capsys)
    assert code == 1
    assert "FAIL proving key" in out and "setup FAILED: proving key" in out, out


def test_verify_on_another_machine_checks_the_proof_with_the_deployed_verifier(
        proof_env: dict[str, Any], tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`market verify` on a machine whose development setup differs (or that has none) used the local key and
    called a valid proof invalid (or built a setup for minutes first); it now checks the proof with the deployed
    verifier's key, in Python when this machine has that very key, else by calling the deployed verifier."""
    ctx = proof_env
    r = ctx["round0"]["round"]
    here = verify_round(ctx["env"].contract, ctx["env"].store, ctx["task_id"], r)
    (detail,) = [d for name, ok, d in here.checks if name == "proof" and ok]
    assert "checked in Python with this machine's key" in detail

    monkeypatch.setenv("MARKET_ZK_DIR", str(tmp_path / "another-machine"))  # no setup here: nothing to build
    there = verify_round(ctx["env"].contract, ctx["env"].store, ctx["task_id"], r)

    assert there.ok, there.checks
    (detail,) = [d for name, ok, d in there.checks if name == "proof" and ok]
    assert "checked by the deployed verifier" in detail and "market zk audit --shape" in detail
    assert not (tmp_path / "another-machine").exists()  # nothing was built


def test_a_regression_task_settles_proven_rounds(tmp_path: Any) -> None:
    """Proven rounds are offered for regression too (the circuit proves Multi-Krum over the sketches and the split of
    the published utilities, whatever the metric): a diabetes task valued by R^2 settles rounds whose proofs the chain
    checks before crediting, `market verify` replays each, and they pay what the unproven default round pays."""
    from simulator.simulate import simulate

    cfg = SimulateConfig(task="diabetes", trainers=5, attackers=1, attack="sign_flip", rounds=2, robust="multikrum", f=1,
                         proof="groth16", chain="anvil", store_dir=str(tmp_path / "store"), seed=2)
    splits = example_splits("diabetes", 5, "iid", 2)
    with open_environment(chain="anvil", n_accounts=9, store="local", store_dir=str(tmp_path / "store")) as env:
        task_id, spec, nodes, agg = _joined(env, cfg, splits)
        assert spec.data.regression and spec.valuation.metric == "r2" and spec.proof.system == "groth16"
        for r in range(2):
            posted = play_round(env, nodes, agg, task_id=task_id).posted
            assert posted is not None and posted.proof is not None and posted.proof["verified_on_chain"] is True
            # the sign-flipper (the last seat) is paid nothing, the honest trainers the whole pool
            assert posted.bps[-1] == 0 and sum(posted.bps) == 10_000 and all(b > 0 for b in posted.bps[:-1])
            rep = verify_round(env.contract, env.store, task_id, r, splits.validation)
            assert rep.ok, rep.checks
            assert {name for name, ok, _ in rep.checks if ok} >= {"statement", "proof", "payout", "replay"}

    proven = simulate(cfg.model_copy(update={"store_dir": str(tmp_path / "sim-proven")}))
    plain = simulate(cfg.model_copy(update={"proof": "none", "robust": "ccdrop", "store_dir": str(tmp_path / "sim-plain")}))
    for a, b in zip(proven["rounds"], plain["rounds"]):
        assert a["proof"]["verified_on_chain"] is True and b["proof"] is None
        assert a["bps"].keys() == b["bps"].keys()
        assert all(abs(b["bps"][t] - v) <= 1 for t, v in a["bps"].items()), (a["bps"], b["bps"])
