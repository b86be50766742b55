"""``market verify --task T [--round R]``: check a settled round against the chain and the store.

Checks, each printed with its result (a failed one with a one-line reason):
  receipt       the round was settled by a posted result; its receipt is in the store, is for this task and
                round, and names the chain's model, spec and validation commitment
  submissions   the receipt lists exactly the updates revealed on chain (digest-checked events), join order
  calldata      the ``postResult`` transaction's arguments equal the receipt: basis points (``bps_vector``),
                model and receipt CIDs, the round's seed (also the one the settlement event recorded, and
                the receipt's valuation seed drawn from it) and the lost-stake mask (``lost``)
  payout        the receipt agrees with itself: bps per trainer, the sum, nothing paid to a rejected or
                outlier update, and the stakes lost are exactly the rejections that are not copies
  input model   the receipt's input model is the chain's previous model: the model of the latest earlier
                round settled by a result, else the task's initial model (the spec's, which is the chain's)
  values        the values the receipt hands on to the next round follow from the chain and its own: its
                submitters are the round's revealed ones and its lists follow from them, its contributions
                name every submitter (0 for an update it did not value), its cumulative values are the earlier
                receipts' sums plus its contributions, and its basis points are the split they give (a
                receipt's stored cumulative values are never read back: a forged one moved later rounds' pay)
  rejections    every revealed update re-checked without the validation set, from the chain's previous
                model: fetched (unavailable), metadata naming its trainer, task and round, sketch commitment,
                malformed, shape, dtype, NaN, norm, zero update, copy; the receipt's rejections must be
                exactly these, with the same reasons
  replay        (with --validation) the whole round recomputed with the chain's seed from the chain's
                previous model: rejections, outliers, utilities, values, cumulative values, basis points,
                payout rule and the model's CID
  statement     (proof tasks) outliers, values and bps follow from the receipt's sketches and
                utilities by the circuit's rules, and equal what was posted
  proof         (proof tasks) the Groth16 proof in the postResult transaction verifies (py_ecc)
                against public inputs rebuilt from the chain and the receipt
  panel         the round's panel drawn again from the chain (the posted seed, the block that sealed the round,
                the registry as of that block): every vote came from a drawn member, and the task's quorum of
                them posted exactly the result that settled the round
Exit status 1 on any mismatch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from web3 import Web3

from market.chain.contract import MarketContract, RoundInfo, RoundSnapshot, Submission, TaskInfo, result_hash
from market.checks import Checks
from market.cid import cid_digest, cid_from_digest, normalize_cid
from market.data import Dataset, dataset_commitment
from market.errors import DataError, MarketError, StoreError
from market.receipt import Receipt
from market.store import ContentStore
from market.task import TaskView, decode_model, load_task, read_receipt

if TYPE_CHECKING:
    from aggregator.service import PriorRound


class Report(Checks):
    """What ``market verify`` found for one round."""


def _diff(a: Any, b: Any, left: str = "receipt", right: str = "recomputed") -> str:
    return f"{left} {a!r} vs {right} {b!r}"[:200]


def _same_cid(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return normalize_cid(a) == normalize_cid(b)
    except MarketError:
        return a == b


def _one_line(text: str, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def previous_model(view: TaskView, settled: dict[int, RoundInfo], round_: int) -> tuple[str, int | None]:
    """The model ``round_`` trains from, by the chain: the model of the latest earlier round settled by a
    result (and that round), else the task's initial model (and None)."""
    for r in range(round_ - 1, -1, -1):
        done = settled.get(r)
        if done is not None and done.settlement == "result" and done.model_cid:
            return done.model_cid, r
    assert view.spec.initial_model_cid
    return view.spec.initial_model_cid, None


def chain_initial_model(contract: MarketContract, task_id: int, info: TaskInfo) -> str | None:
    """The initial model the task was created with on chain (the ``createTask`` calldata), or None if unreadable."""
    try:
        ev = contract.c.events.TaskCreated
        logs = contract.chain.with_retry(
            lambda: ev.get_logs(from_block=info.created_block, to_block=info.created_block,
                                argument_filters={"taskId": task_id}), what="read the TaskCreated event")
        if not logs:
            return None
        tx_hash = logs[0]["transactionHash"]
        tx = contract.chain.with_retry(lambda: contract.chain.w3.eth.get_transaction(tx_hash), what="read createTask")
        _fn, args = contract.c.decode_function_input(tx["input"])
        return cid_from_digest(bytes(_field(args["p"], "initialModelCid", 1)))
    except (MarketError, ValueError, KeyError, IndexError):
        return None


def _field(struct: Any, name: str, index: int) -> Any:
    """A decoded ABI struct's field, whether web3 gave the struct as a dict or as a tuple."""
    return struct[name] if isinstance(struct, dict) else struct[index]


def posted_result(contract: MarketContract, task_id: int, round_: int, info: TaskInfo) -> dict[str, Any]:
    """The arguments of the ``postResult`` transaction that settled ``round_`` (:meth:`MarketContract.result_call`)."""
    return contract.result_call(task_id, round_, info)


def expected_mask(subs: list[Submission], lost: list[str]) -> int:
    """Bit j: the j-th revealed update (join order) lost its stake."""
    gone = {a.lower() for a in lost}
    return sum(1 << j for j, s in enumerate(subs) if s.trainer.lower() in gone)


def verify_round(contract: MarketContract, store: ContentStore, task_id: int, round_: int,
                 validation: Dataset | None = None, emit: Callable[[str, bool, str], None] | None = None) -> Report:
    rep = Report()

    def add(name: str, ok: bool, detail: str) -> bool:
        detail = _one_line(detail)
        if emit:
            emit(name, ok, detail)
        return rep.add(name, ok, detail)

    view = load_task(contract, store, task_id)
    chain = view.info
    settled = contract.settled_rounds(task_id, chain)
    info = settled.get(round_) or RoundInfo(chain.submissions_digest, None, None, "open")
    if info.settlement != "result" or not info.receipt_cid or not info.model_cid:
        add("receipt", False, f"round {round_} is {info.settlement}: there is no posted result to verify")
        return rep
    try:
        receipt = read_receipt(store, info.receipt_cid)
    except (StoreError, DataError) as exc:
        add("receipt", False, str(exc))
        return rep
    wrong = []
    if (receipt.task_id, receipt.round) != (task_id, round_):
        wrong.append(f"it is for task {receipt.task_id} round {receipt.round}")
    if not _same_cid(receipt.model_cid, info.model_cid):
        wrong.append(f"it names model {receipt.model_cid}, the chain {info.model_cid}")
    if not _same_cid(receipt.spec_cid, chain.spec_cid):
        wrong.append(f"it names spec {receipt.spec_cid}, the chain {chain.spec_cid}")
    if receipt.validation_commitment.lower() != chain.validation_commitment.lower():
        wrong.append("its validation commitment is not the task's")
    add("receipt", not wrong, f"{info.receipt_cid} (model {info.model_cid})" if not wrong else "; ".join(wrong))

    subs = list(contract.submissions(task_id, round_, chain, settled))  # revealed, digest-checked, join order
    listed = [(s.trainer, s.cid, s.commitment.lower()) for s in receipt.submissions]
    on_chain = [(s.trainer, s.cid, "0x" + s.commitment.hex()) for s in subs]
    add("submissions", listed == on_chain,
        f"{len(on_chain)} revealed on chain" if listed == on_chain else _diff(listed, on_chain, right="chain"))

    call = posted_result(contract, task_id, round_, chain)
    _check_calldata(call, receipt, info, subs, add)
    _check_payout(receipt, add)

    prev_cid, prev_round = previous_model(view, settled, round_)
    where = f"round {prev_round}'s model" if prev_round is not None else "the task's initial model"
    problems = []
    if not _same_cid(receipt.input_model_cid, prev_cid):
        problems.append(f"the receipt starts from {receipt.input_model_cid}, the chain's previous model is {prev_cid} ({where})")
    if prev_round is None:
        initial = chain_initial_model(contract, task_id, chain)
        if initial is not None and not _same_cid(initial, prev_cid):
            problems.append(f"the spec's initial model {prev_cid} is not the one the task was created with on chain ({initial})")
    add("input model", not problems, f"{prev_cid} ({where})" if not problems else "; ".join(problems))

    state: Any = None
    prev_blob: bytes | None = None
    try:
        prev_blob = store.get(prev_cid)
        state = decode_model(view.spec, prev_blob, f"the previous model {prev_cid}")
    except MarketError as exc:
        add("rejections", False, f"cannot re-check the updates: {exc}")
    snap = RoundSnapshot(chain, round_, tuple(subs), settled)
    prior = _check_values(contract, view, store, snap, receipt, add)
    if state is not None and prev_blob is not None and prior is not None:
        _check_rejections(view, store, snap, receipt, state, len(prev_blob), prior, add)

    if validation is not None:
        if "0x" + dataset_commitment(validation).hex() != chain.validation_commitment:
            add("replay", False, "the validation set does not match the task's validation commitment")
        elif state is not None:
            _replay(contract, store, view, snap, receipt, info, call, prev_cid, validation, add)

    _check_panel(contract, task_id, round_, chain, call, add)
    if view.spec.proof.system != "none":
        _check_proof(contract, task_id, round_, view, receipt, info, subs, call, add)
    return rep


def posted_result_hash(call: dict[str, Any]) -> bytes:
    """What a panel member's post votes for (:func:`market.chain.contract.result_hash`) of its ``postResult``
    arguments (each member posts its own receipt)."""
    return result_hash(cid_from_digest(bytes(call["modelCid"])), bytes(call["seed"]), int(call["lostMask"]),
                       [int(b) for b in call["bps"]])


def _check_panel(contract: MarketContract, task_id: int, round_: int, chain: TaskInfo, call: dict[str, Any],
                 add: Callable[[str, bool, str], bool]) -> None:
    """The round's panel, drawn again from the chain (the seed posted, the block that sealed the round, the
    registry as of that block), and its votes: every vote from a drawn member, and the task's quorum of them
    for exactly the result that settled the round."""
    seal = contract.draw_block_of(task_id, round_, chain)
    if seal is None:
        add("panel", False, f"no RoundSealed event for round {round_}")
        return
    k = chain.panel + (1 if chain.has_backup else 0)
    drawn = contract.registry.draw(bytes(call["seed"]), seal, k, chain.owner)
    settled = posted_result_hash(call)
    if chain.quorum > 1:
        votes = contract.votes(task_id, round_, chain)
    else:  # a quorum of one decides at once, nothing is stored: the settling transaction's sender is the vote
        votes = {str(call["sender"]): settled}
    agreed = [m for m, h in votes.items() if h == settled]
    strangers = [m for m in votes if m not in drawn]
    wrong = []
    if strangers:
        wrong.append(f"votes from members the draw did not pick: {', '.join(strangers)}")
    if len(agreed) < chain.quorum:
        wrong.append(f"{len(agreed)} drawn members posted the settled result; the task's quorum is {chain.quorum}")
    others = [m for m, h in votes.items() if h != settled]
    detail = (f"{len(agreed)} of {chain.panel} drawn (quorum {chain.quorum}) posted the settled result"
              + (f"; {len(others)} posted another and lost bond" if others else ""))
    add("panel", not wrong, detail if not wrong else "; ".join(wrong))


def _check_calldata(call: dict[str, Any], receipt: Receipt, info: RoundInfo, subs: list[Submission],
                    add: Callable[[str, bool, str], bool]) -> None:
    """The posted ``postResult`` arguments against the receipt (and the settlement event)."""
    from aggregator.service import valuation_seed

    wrong = []
    posted_bps = [int(b) for b in call["bps"]]
    if posted_bps != list(receipt.bps_vector):
        wrong.append("bps: " + _diff(list(receipt.bps_vector), posted_bps, right="posted"))
    if bytes(call["modelCid"]) != cid_digest(receipt.model_cid):
        wrong.append(f"model: the receipt names {receipt.model_cid}, the transaction posted {cid_from_digest(bytes(call['modelCid']))}")
    if info.receipt_cid is None or bytes(call["receiptCid"]) != cid_digest(info.receipt_cid):
        wrong.append("receipt CID: the transaction posted another receipt than the settlement names")
    seed = bytes(call["seed"])
    try:
        claimed = bytes.fromhex(receipt.round_seed.removeprefix("0x")) if receipt.round_seed else b""
    except ValueError:
        claimed = b""
    if claimed != seed:
        wrong.append(f"seed: the receipt says {receipt.round_seed or 'nothing'}, the transaction posted 0x{seed.hex()}")
    if info.seed != seed:
        wrong.append("seed: the settlement event recorded another seed than the transaction posted")
    if receipt.valuation_seed != valuation_seed(seed):
        wrong.append(f"valuation seed: the receipt used {receipt.valuation_seed}, the chain's seed gives {valuation_seed(seed)}")
    mask = expected_mask(subs, receipt.lost)
    if int(call["lostMask"]) != mask:
        wrong.append(f"lost stakes: the receipt's lost {receipt.lost} are mask {mask:#x}, the transaction posted {int(call['lostMask']):#x}")
    add("calldata", not wrong, f"bps {posted_bps}, model, receipt, seed 0x{seed.hex()[:8]}… and lost mask {mask:#x} as posted"
        if not wrong else "; ".join(wrong))


def _check_payout(receipt: Receipt, add: Callable[[str, bool, str], bool]) -> None:
    """The receipt's own decisions and its basis points agree."""
    wrong = []
    order = [s.trainer for s in receipt.submissions]
    if len(receipt.bps_vector) != len(order):
        wrong.append(f"{len(receipt.bps_vector)} bps entries for {len(order)} submissions")
    by = dict(zip(order, receipt.bps_vector))
    if {a: int(b) for a, b in receipt.bps.items() if a in by or b} != by:
        wrong.append("bps per trainer: " + _diff(receipt.bps, by, left="receipt.bps", right="bps_vector"))
    total = sum(receipt.bps_vector)
    if total not in (0, 10_000):
        wrong.append(f"bps sum to {total}, not 10000")
    paid_bad = [a for a in [*receipt.rejected, *receipt.outliers] if by.get(a, 0)]
    if paid_bad:
        wrong.append(f"rejected or outlier updates paid: {', '.join(f'{a} {by[a]} bps' for a in paid_bad)}")
    stray = [a for a in receipt.lost if a not in receipt.rejected]
    if stray:
        wrong.append(f"stakes taken from trainers the receipt does not reject: {', '.join(stray)}")
    add("payout", not wrong, f"{sum(1 for b in receipt.bps_vector if b)} paid, {len(receipt.outliers)} outliers, "
        f"{len(receipt.rejected)} rejected, {len(receipt.lost)} stakes lost" if not wrong else "; ".join(wrong))


def _check_values(contract: MarketContract, view: TaskView, store: ContentStore, snap: RoundSnapshot, receipt: Receipt,
                  add: Callable[[str, bool, str], bool]) -> PriorRound | None:
    """The values the receipt carries to the next round follow from the earlier receipts' and give what it paid
    (:func:`aggregator.ledger.split_problem`); the earlier rounds read, or None when they cannot be."""
    from aggregator.ledger import split_problem
    from aggregator.service import earlier_reveals, prior_round

    try:
        prior = prior_round(store, snap, view.spec, earlier_reveals(contract, snap))
    except MarketError as exc:
        add("values", False, f"cannot read the earlier rounds' receipts: {exc}")
        return None
    problem = split_problem(view.spec, receipt, prior.values, [s.trainer for s in snap.submissions])
    skipped = "".join(f"; round {r}'s values left out: {why}" for r, why in prior.left_out.items())
    add("values", problem is None, ("its cumulative values are the earlier rounds' plus its own, and its basis points "
                                    "their split" + skipped) if problem is None else problem + skipped)
    return prior


def _check_rejections(view: TaskView, store: ContentStore, snap: RoundSnapshot, receipt: Receipt, state: Any,
                      model_bytes: int, prior: PriorRound, add: Callable[[str, bool, str], bool]) -> None:
    """Every check that needs no validation set, re-run on the revealed updates from the chain's previous model."""
    from aggregator.fetch import fetch_updates, update_size_cap
    from aggregator.service import FETCH_BUDGET_S, prefilter
    from aggregator.validate import validate_all

    subs = list(snap.submissions)
    task_id, round_ = snap.task_id, snap.round
    fetched = fetch_updates(store, [s.cid for s in subs], budget_s=FETCH_BUDGET_S, max_bytes=update_size_cap(model_bytes))
    usable, prerejected, _sketches = prefilter(view.spec, task_id, round_, subs, store, fetched)
    valid = validate_all(view.spec, state, usable, prior.updates, {s.trainer: s.seq for s in subs})
    found = {**prerejected, **valid.rejected}
    unavailable = {s.trainer for s in subs if isinstance(fetched.get(s.cid), StoreError)}
    wrong = []
    for s in subs:
        a = s.trainer
        claimed, actual = receipt.rejected.get(a), found.get(a)
        if a in unavailable:
            if claimed is None:
                wrong.append(f"cannot re-check {a}'s update, kept by the receipt: {actual}")
            continue  # unavailable now: the receipt's reason cannot be re-checked
        if claimed is not None and actual is None:
            wrong.append(f"the receipt rejects {a} ({claimed}) but its update passes every check that needs no validation set")
        elif claimed is None and actual is not None:
            wrong.append(f"the receipt keeps {a} but its update is invalid: {actual}")
        elif claimed is not None and actual is not None and claimed != actual:
            wrong.append(f"the receipt rejects {a} for {claimed!r}, the re-check finds {actual!r}")
    extra = [a for a in receipt.rejected if a not in {s.trainer for s in subs}]
    if extra:
        wrong.append(f"the receipt rejects trainers that revealed nothing: {', '.join(extra)}")
    should_lose = [s.trainer for s in subs if s.trainer in receipt.rejected and s.trainer not in valid.copies]
    if not wrong and sorted(receipt.lost) != sorted(should_lose):
        wrong.append("stakes lost: " + _diff(sorted(receipt.lost), sorted(should_lose), right="re-checked (every rejection but a copy)"))
    checked = len(subs) - len(unavailable)
    detail = (f"{checked} updates re-checked without the validation set, {len(found)} rejected as the receipt says"
              + (f" ({len(unavailable)} unavailable now)" if unavailable else ""))
    add("rejections", not wrong, detail if not wrong else "; ".join(wrong))


def _replay(contract: MarketContract, store: ContentStore, view: TaskView, snap: RoundSnapshot, receipt: Receipt,
            info: RoundInfo, call: dict[str, Any], prev_cid: str, validation: Dataset,
            add: Callable[[str, bool, str], bool]) -> None:
    """The whole round recomputed with the chain's seed, from the chain's previous model."""
    from aggregator.service import Aggregator

    round_ = snap.round
    at_round = replace(view.info, current_round=round_, latest_model_cid=prev_cid)
    replay_view = TaskView(at_round, view.spec)
    agg = Aggregator(contract, store, None, validation)  # type: ignore[arg-type]  # no transaction is sent
    try:
        out, model_cid, again = agg.compute_round(replay_view, replace(snap, info=at_round), round_seed=bytes(call["seed"]))
    except MarketError as exc:
        add("replay", False, f"the round could not be recomputed: {exc}")
        return
    details = receipt.details
    fields = {
        "model": (info.model_cid, model_cid),
        "bps": ([int(b) for b in call["bps"]], again.bps_vector),
        "rejected": (receipt.rejected, again.rejected),
        "outliers": (receipt.outliers, again.outliers),
        "lost": (sorted(receipt.lost), sorted(again.lost)),
        "payout rule": (details.payout, out.payout),
        "values": (details.contributions, out.contributions),
        "cumulative values": (details.cumulative_values, out.cumulative_values),
        "utilities": (details.proof.utilities if details.proof else details.utilities,
                      out.proof.utilities if out.proof else out.utilities),
    }
    wrong = [k for k, (a, b) in fields.items() if a != b]
    add("replay", not wrong, "rejections, outliers, utilities, values, bps, stakes lost, payout rule and model CID recomputed "
        "with the chain's seed" if not wrong else f"differs in {', '.join(wrong)}: "
        + "; ".join(f"{k}: {_diff(*fields[k], left='posted')}" for k in wrong))


def _check_proof(contract: MarketContract, task_id: int, round_: int, view: Any, receipt: Receipt, info: Any,
                 subs: list[Any], call: dict[str, Any], add: Callable[[str, bool, str], bool]) -> None:
    from market.zk import statement as zs
    from market.zk.prover import decode_round_proof
    from market.zk.setup import Shape

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
    on_chain = dict(zip([s.trainer for s in subs], (int(b) for b in call["bps"])))  # what was posted, not the receipt
    posted = [on_chain.get(a, 0) for a in slots]
    outl = [slots[i] for i in decision.outliers]
    ok = list(st.bps) == posted and sorted(outl) == sorted(receipt.outliers)
    add("statement", ok, f"outliers {len(outl)}, bps {list(st.bps)}" if ok else _diff(posted, list(st.bps)))
    # the proof, from the postResult transaction
    words, _prev, _subs, _mask, util_hash = decode_round_proof(bytes(call["proof"]))
    shape = Shape(decision.n, inputs.k, decision.f)
    good, how = util_hash == st.public[-1], "the utilities hash differs"
    if good:
        good, how = _verify_groth16(contract, view.info.verifier, shape, words, st.public)
    add("proof", good, f"Groth16 proof verifies for {shape.name} ({how})" if good
        else f"the posted proof does not verify against the receipt and the chain ({how})")


def _verify_groth16(contract: MarketContract, verifier: str, shape: Any, words: Sequence[int],
                    public: Sequence[int]) -> tuple[bool, str]:
    """The proof against the key of the verifier the task's RoundVerifier calls for ``shape.n``: in pure Python
    (py_ecc) when this machine's setup for the shape has that very verifier code, else by calling the deployed
    verifier (another machine's setup has another key; ``market zk audit`` checks where the deployed key came from)."""
    from market.zk.deploy import selector
    from market.zk.prover import verify_py
    from market.zk.setup import cached

    rv = contract.round_verifier(verifier)
    part = Web3.to_checksum_address(contract.chain.call(rv.functions.verifierFor(shape.n)))
    local = cached(shape)
    if local is not None:
        # the deployed code embeds its key's points: this machine's key is the deployed one when they all appear in it
        code = bytes(contract.chain.w3.eth.get_code(part))
        vk = local.vkey
        points = [vk["vk_alpha_1"][0], vk["vk_alpha_1"][1], *vk["vk_delta_2"][0], *vk["vk_delta_2"][1],
                  *(c for p in vk["IC"] for c in p[:2])]
        if code and all(int(x).to_bytes(32, "big").lstrip(b"\0") in code for x in points):  # (pushed without leading zeros)
            return verify_py(vk, words, public), "checked in Python with this machine's key, the deployed one"
    data = selector(shape.n) + b"".join(int(w).to_bytes(32, "big") for w in (*words, *public))
    try:
        ret = bytes(contract.chain.w3.eth.call({"to": part, "data": data}))
    except Exception:  # noqa: BLE001 - a reverting verifier is a proof that does not verify
        ret = b""
    ok = len(ret) == 32 and int.from_bytes(ret, "big") == 1
    return ok, f"checked by the deployed verifier {part}; audit its key with `market zk audit --shape {shape.n}:{shape.k}:{shape.f}`"


__all__ = ["Report", "chain_initial_model", "expected_mask", "posted_result", "previous_model", "verify_round"]
