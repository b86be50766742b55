"""Groth16 round proofs: circuit size, proving time, on-chain verification gas, proof size.

    python bench/proof.py --json PATH [--cases 4:16,8:16,16:16,4:32,8:32,16:32] [--f 1]

For each (n trainers, k sketch entries): builds the development setup (cached; ``built_s`` is
what building it took when it was built: compile + powers of tau if new + proving key), proves
a random valid round statement with snarkjs, and measures on a throwaway Anvil a transaction to
``verifyProof`` on the exported Groth16 verifier: ``verify_gas`` is its execution gas (the
transaction's gas minus the 21,000 base and the calldata charge, i.e. what verifying costs a
caller such as the RoundVerifier), ``verify_tx_gas`` the whole transaction.  The top-level
``setup_s`` times ``make zk-setup`` (everything ``make test`` needs) in an empty cache.
``proof_bytes`` is the Groth16 proof itself (8 words); ``calldata_bytes`` what postResult's
``proof`` argument carries for that round (proof, previous digest, the round's submissions
and the utilities hash).

Output (issue 15's format): ``{"setup_s": {"n<N>-k<K>-f<F>": seconds}, "zk_setup_s": seconds,
"cases": [{"task", "n", "constraints", "prove_s", "verify_gas", "proof_bytes", "calldata_bytes",
"binds_utilities", "binds", ...}]}``.  ``binds_utilities`` is False: the circuit takes the coalition
utilities as the prover's input (hashed into a public input), so a proof binds the outliers, values
and basis points to them, not them to the models; ``binds`` lists what each proof does bind.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from market.chain.client import Chain  # noqa: E402
from market.chain.devchain import AnvilProcess, dev_accounts  # noqa: E402
from market.zk import statement as zs  # noqa: E402
from market.zk.deploy import selector  # noqa: E402
from market.zk.prover import encode_round_proof, prove  # noqa: E402
from market.zk.setup import Shape, build  # noqa: E402


def case(chain: Chain, account, n: int, k: int, f: int) -> dict:  # type: ignore[no-untyped-def]
    rng = random.Random(n * 100 + k)
    t0 = time.perf_counter()
    built = build(Shape(n, k, f), progress=lambda m: print("  " + m, flush=True))
    setup_s = time.perf_counter() - t0
    sk = [[rng.randint(-40, 40) for _ in range(k)] for _ in range(n)]
    for i in range(f):
        sk[i] = [v + 900 for v in sk[i]]
    d = zs.decide(sk, [rng.randrange(2**250) for _ in range(n)], f, zs.permutation(rng.randbytes(32), n))
    util = [min(4096, 1000 + 150 * len(c - set(d.outliers)) + rng.randint(0, 40)) for c in d.coalitions]
    st = zs.settle(d, util, rng.randrange(2**250))
    proof = prove(built, st.witness)
    address = chain.deploy(account, built.verifier)
    data = selector(n) + b"".join(w.to_bytes(32, "big") for w in (*proof.words(), *st.public))
    tx = chain.w3.eth.send_transaction({"from": account.address, "to": address, "data": data, "gas": 2_000_000})
    rcpt = chain.w3.eth.wait_for_transaction_receipt(tx)
    calldata_gas = sum(16 if b else 4 for b in data)
    ok = chain.w3.eth.call({"to": address, "data": data}, "latest")[-1] == 1
    calldata = encode_round_proof(proof, b"\x00" * 32, [(i + 1, b"\x01" * 32, b"\x02" * 32) for i in range(n)], 0, st.public[-1])
    return {"task": "digits (default spec, Multi-Krum over sketches)", "n": n, "k": k, "f": f, "constraints": int(built.meta["constraints"]), "power": int(built.meta["power"]),
            "prove_s": round(proof.prove_s, 3), "verify_gas": int(rcpt["gasUsed"]) - 21_000 - calldata_gas,
            "verify_tx_gas": int(rcpt["gasUsed"]), "verified": bool(ok), "proof_bytes": 256,
            "calldata_bytes": len(calldata), "built_s": round(sum(built.meta.get(k, 0.0) for k in ("compile_s", "ptau_s", "keys_s")), 1),
            "setup_this_run_s": round(setup_s, 1), "binds_utilities": False, "binds": BINDS}


#: what a round proof binds (zk/round.circom), and what it does not
BINDS = {"sketch_commitments": True, "outliers": "Multi-Krum over the committed sketches", "values": "cyclic Shapley over the utilities",
         "basis_points": True, "utilities": False, "rejections": False, "projection_drawn_after_reveal": False,
         "model": False}  # the model: ccdrop over the valid full updates, recomputed by the panel's quorum


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--cases", default="4:16,8:16,16:16,4:32,8:32,16:32")
    ap.add_argument("--f", type=int, default=1)
    ap.add_argument("--no-setup-timing", action="store_true", help="skip timing `make zk-setup` in an empty cache")
    args = ap.parse_args()
    cases = [tuple(int(x) for x in c.split(":")) for c in args.cases.split(",")]
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
           "development_setup": True, "setup_s": {}, "cases": []}
    t_all = time.perf_counter()
    with AnvilProcess() as anvil:
        chain = Chain.connect(anvil.rpc_url)
        account = dev_accounts(1)[0]
        for n, k in cases:
            print(f"n={n} k={k} ...", flush=True)
            out["cases"].append(case(chain, account, n, k, args.f))
            c = out["cases"][-1]
            out["setup_s"][f"n{c['n']}-k{c['k']}-f{c['f']}"] = c["built_s"]
            print(f"  {c['constraints']:>7} constraints  prove {c['prove_s']:6.2f} s  verify {c['verify_gas']:>7} gas  "
                  f"proof {c['proof_bytes']} B (calldata {c['calldata_bytes']} B)  built in {c['built_s']} s", flush=True)
            Path(args.json).write_text(json.dumps(out, indent=1))
    if not args.no_setup_timing:
        import subprocess
        import tempfile

        with tempfile.TemporaryDirectory(prefix="zk-setup-") as empty:
            print("timing `make zk-setup` in an empty cache ...", flush=True)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "market.zk.setup"], check=True, env={**os.environ, "MARKET_ZK_DIR": empty},
                           cwd=Path(__file__).resolve().parents[1])
            out["zk_setup_s"] = round(time.perf_counter() - t0, 1)
            print(f"  zk_setup_s {out['zk_setup_s']} s", flush=True)
    out["total_s"] = round(time.perf_counter() - t_all, 1)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
