"""``market verify --task T --round R``: re-derive a settled round from the chain and the store.

Checks, each printed with its result:
  receipt       the round was settled by a result whose receipt and model CIDs the chain names
  submissions   the receipt lists exactly the chain's submissions (digest-checked events)
  commitments   every stored update's sketch and submitter binder match its on-chain commitment
  replay        (with --validation) the whole round recomputed: rejections, outliers, utilities,
                basis points and the model's CID are those of the receipt and the chain
  statement     (proof tasks) outliers, values and bps follow from the receipt's sketches and
                utilities by the circuit's rules, and equal what was posted
  proof         (proof tasks) the Groth16 proof in the postResult transaction verifies (py_ecc)
                against public inputs rebuilt from the chain and the receipt
Exit status 1 on any mismatch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from market.chain.contract import MarketContract, RoundInfo, RoundSnapshot
from market.cid import cid_digest, compute_cid
from market.data import Dataset, dataset_commitment
from market.errors import DataError, StoreError
from market.receipt import Receipt
from market.store import ContentStore
from market.task import decode_model, load_task, read_receipt


@dataclass
class Report:
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append((name, ok, detail))
        return ok

    @property
    def ok(self) -> bool:
        return all(ok for _, ok, _ in self.checks)


def _diff(a: Any, b: Any) -> str:
    return f"receipt {a!r} vs recomputed {b!r}"[:200]


def verify_round(contract: MarketContract, store: ContentStore, task_id: int, round_: int,
                 validation: Dataset | None = None, emit: Callable[[str, bool, str], None] | None = None) -> Report:
    rep = Report()

    def add(name: str, ok: bool, detail: str) -> bool:
        if emit:
            emit(name, ok, detail)
        return rep.add(name, ok, detail)

    view = load_task(contract, store, task_id)
    settled = contract.settled_rounds(task_id, view.info)
    info = settled.get(round_) or RoundInfo(view.info.submissions_digest, None, None, "open")
    if info.settlement != "result" or not info.receipt_cid:
        add("receipt", False, f"round {round_} is {info.settlement}: there is no posted result to verify")
        return rep
    try:
        receipt = read_receipt(store, info.receipt_cid)
    except (StoreError, DataError) as exc:
        add("receipt", False, str(exc))
        return rep
    add("receipt", receipt.model_cid == info.model_cid and receipt.task_id == task_id
        and receipt.round == round_, f"{info.receipt_cid} (model {info.model_cid})")

    snap = RoundSnapshot(view.info, round_, tuple(contract.submissions(task_id, round_, view.info, settled)), settled)
    subs = list(snap.submissions)
    listed = [(s.trainer, s.cid, s.commitment) for s in receipt.submissions]
    chain_subs = [(s.trainer, s.cid, "0x" + s.commitment.hex()) for s in subs]
    add("submissions", listed == chain_subs, f"{len(chain_subs)} on chain" if listed == chain_subs else _diff(listed, chain_subs))

    from aggregator.service import prefilter, prior_round

    usable, prerejected, sketches = prefilter(view.spec, task_id, round_, subs, store)
    bad = {a: r for a, r in prerejected.items() if "commitment" in r}
    add("commitments", not bad and all(receipt.rejected.get(a) == r for a, r in prerejected.items()),
        f"{len(sketches)} sketches match their commitments" if not bad else f"mismatch: {bad}")

    details = receipt.details
    if validation is not None:
        if "0x" + dataset_commitment(validation).hex() != view.info.validation_commitment:
            add("replay", False, "the validation set does not match the task's validation commitment")
        else:
            from aggregator.round import aggregate_round
            from market.tensors import encode_state
            from market.zk.sketch import binder

            state = decode_model(view.spec, store.get(receipt.input_model_cid), "input model")
            proof_args: dict[str, Any] = {}
            if view.spec.proof.system != "none":
                proof_args = {"proof_seed": info.submissions_digest, "sketches": sketches,
                              "binders": {s.trainer: binder(task_id, round_, s.trainer, s.cid) for s in subs}}
            prior = prior_round(store, snap)
            out = aggregate_round(view.spec, state, usable, validation.x, validation.y, seed=receipt.valuation_seed,
                                  prior_values=prior.values, earlier=prior.updates,
                                  order={s.trainer: s.seq for s in subs}, **proof_args)
            model_cid = compute_cid(encode_state(out.new_state, {"kind": "model", "round": str(round_)}))
            fields = {
                "outliers": (receipt.outliers, list(out.outliers)),
                "bps": (receipt.bps_vector, [out.bps_by_address.get(s.trainer, 0) for s in subs]),
                "utilities": (details.proof.utilities if details.proof else details.utilities,
                              out.proof.utilities if out.proof else out.utilities),
                "model": (info.model_cid, model_cid),
                "payout rule": (details.payout, out.payout),
            }
            wrong = [k for k, (a, b) in fields.items() if a != b]
            add("replay", not wrong, "outliers, utilities, bps, payout rule and model CID recomputed" if not wrong
                else "; ".join(f"{k}: {_diff(*fields[k])}" for k in wrong))

    if view.spec.proof.system != "none":
        _check_proof(contract, task_id, round_, view, receipt, info, subs, add)
    return rep


def _check_proof(contract: MarketContract, task_id: int, round_: int, view: Any, receipt: Receipt, info: Any,
                 subs: list[Any], add: Callable[[str, bool, str], bool]) -> None:
    from market.zk import statement as zs
    from market.zk.prover import decode_round_proof, verify_py
    from market.zk.setup import Shape, build

    inputs = receipt.details.proof
    decision = inputs.decision() if inputs else None
    if inputs is None or decision is None:
        add("statement", inputs is not None and all(b == 0 for b in receipt.bps_vector), "no valid update: nothing proven")
        return
    slots = inputs.slots
    binding = zs.binding(contract.chain.chain_id, contract.address, Web3.to_checksum_address(view.info.verifier), task_id,
                         round_, cid_digest(info.model_cid), cid_digest(info.receipt_cid))
    try:
        st = zs.settle(decision, inputs.utilities, binding)
    except (ValueError, AssertionError) as exc:
        add("statement", False, str(exc))
        return
    call = contract.result_call(task_id, round_)  # what was posted on chain, not what the receipt says
    on_chain = dict(zip([s.trainer for s in subs], (int(b) for b in call["bps"])))
    posted = [on_chain.get(a, 0) for a in slots]
    outl = [slots[i] for i in decision.outliers]
    ok = list(st.bps) == posted and sorted(outl) == sorted(receipt.outliers)
    add("statement", ok, f"outliers {len(outl)}, bps {list(st.bps)}" if ok else _diff(posted, list(st.bps)))
    # the proof, from the postResult transaction
    words, _prev, _subs, _mask, util_hash = decode_round_proof(bytes(call["proof"]))
    shape = Shape(decision.n, inputs.k, decision.f)
    good = util_hash == st.public[-1] and verify_py(build(shape).vkey, words, st.public)
    add("proof", good, f"Groth16 proof verifies for {shape.name}" if good
        else "the posted proof does not verify against the receipt and the chain")


__all__ = ["Report", "verify_round"]
