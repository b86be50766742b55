pragma circom 2.1.0;

// Proof that one round's result follows the task's published rules.
//
// Statement (public inputs in this order):
//   binding       keccak256(chainid, market, verifier, taskId, round) mod p: ties the proof to one round
//   perm          the round's base permutation of the N valid slots, N indices of PB bits, slot 0
//                 in the lowest bits; derived on chain from the submissions digest
//   commit[N]     each valid submitter's on-chain sketch commitment, Poseidon(packed sketch)
//   bpsPacked[NB] the posted basis points of the valid submitters, 14 bits each, 18 per element
//   utilHash      Poseidon chain over the published prefix utilities (the round receipt's)
// Witness: the sketches (K signed SB-bit integers each, offset by 2^(SB-1)), the utilities
// (UB-bit integers: validation accuracy in units of 1/4096) and the decision helpers below.
//
// What is enforced:
//   1. every sketch hashes, with its submitter binder, to its commitment;
//   2. outliers = the F slots with the highest Multi-Krum scores over the sketches
//      (score = sum of squared distances to the N-F-1 nearest other sketches);
//   3. values = cyclic-permutation Shapley: for rotation r of the base permutation, the
//      marginal of the slot at position t is U[r][t+1] - U[r][t]; a slot's value is the sum of
//      its N marginals (one per position); U[r][0] is the empty coalition, U[r][N] the full one;
//   4. bps = largest-remainder split of 10,000 over max(value, 0) of the non-outliers (ties to
//      the lower slot), or an equal split of the non-outliers if none is positive
//      (aggregator/payout.py, in integers).
// Every inequality is a prover-supplied threshold plus range checks; nothing is sorted.

include "circomlib/circuits/poseidon.circom";
include "circomlib/circuits/bitify.circom";

function ceildiv(a, b) { return (a + b - 1) \ b; }

function bitsFor(x) {
    var b = 1;
    while ((1 << b) < x) { b++; }
    return b;
}

// 0 <= in < 2^b
template InRange(b) {
    signal input in;
    component bits = Num2Bits(b);
    bits.in <== in;
}

// Poseidon over any number of elements: h = Poseidon(h, next CH elements), zero padded, h0 = 0.
template PoseidonChain(L) {
    signal input in[L];
    signal output out;
    var CH = L < 15 ? L : 15;
    var NCH = ceildiv(L, CH);
    component h[NCH];
    for (var c = 0; c < NCH; c++) {
        h[c] = Poseidon(CH + 1);
        h[c].inputs[0] <== c == 0 ? 0 : h[c - 1].out;
        for (var j = 0; j < CH; j++) {
            h[c].inputs[j + 1] <== c * CH + j < L ? in[c * CH + j] : 0;
        }
    }
    out <== h[NCH - 1].out;
}

// Pack L values of B bits (already range checked) into ceildiv(L, 252 \ B) field elements.
template Pack(L, B) {
    var PER = 252 \ B;
    var NE = ceildiv(L, PER);
    signal input in[L];
    signal output out[NE];
    for (var e = 0; e < NE; e++) {
        var acc = 0;
        for (var j = 0; j < PER; j++) {
            if (e * PER + j < L) { acc += in[e * PER + j] * (1 << (B * j)); }
        }
        out[e] <== acc;
    }
}

template RoundResult(N, K, F, SB, UB) {
    var PB = bitsFor(N);                  // bits per permutation index
    var NU = 2 + N * (N - 1);           // utilities: empty, full, then N rotations x (N-1) inner prefixes
    var NBE = ceildiv(N, 18);           // packed bps elements
    var DB = 2 * SB + bitsFor(K) + 1;     // squared distance bits
    var KN = N - F - 1;                 // Krum neighbours
    var SCB = DB + bitsFor(N) + 1;        // score bits
    var VB = UB + bitsFor(N) + 2;         // |value| < 2^VB
    var RB = VB + bitsFor(N) + 2;         // remainders < total weight < 2^RB

    signal input binding;
    signal input perm;
    signal input commit[N];
    signal input bpsPacked[NBE];
    signal input utilHash;

    signal input sketch[N][K];
    signal input binder[N];      // keccak(task, round, trainer, cid) mod p: binds a commitment to its submitter
    signal input util[NU];
    signal input sel[N][N];      // sel[i][j] = 1: j is one of i's KN nearest (j != i)
    signal input tau[N];         // i's neighbour threshold
    signal input out[N];         // 1 = outlier
    signal input outT;           // outlier score threshold
    signal input permHot[N][N];  // permHot[p][i] = 1: slot i sits at base position p
    signal input zeroInv;        // inverse of the total positive value (0 if it is 0)
    signal input q[N];           // floor quotas
    signal input r[N];           // remainders
    signal input bonus[N];       // 1 = gets one leftover point
    signal input bonusT;         // remainder threshold

    // the binding is a public input that no other constraint uses: square it so it is bound
    signal bindingSq;
    bindingSq <== binding * binding;

    // 1. sketches in range and matching their commitments
    component skRange[N][K];
    component skPack[N];
    component skHash[N];
    for (var i = 0; i < N; i++) {
        skPack[i] = Pack(K, SB);
        for (var k = 0; k < K; k++) {
            skRange[i][k] = InRange(SB);
            skRange[i][k].in <== sketch[i][k];
            skPack[i].in[k] <== sketch[i][k];
        }
        skHash[i] = Poseidon(ceildiv(K, 252 \ SB) + 1);
        for (var e = 0; e < ceildiv(K, 252 \ SB); e++) { skHash[i].inputs[e] <== skPack[i].out[e]; }
        skHash[i].inputs[ceildiv(K, 252 \ SB)] <== binder[i];
        skHash[i].out === commit[i];
    }

    // 2. pairwise squared distances
    signal diff[N][N][K];
    signal sq[N][N][K];
    var dist[N][N];
    for (var i = 0; i < N; i++) {
        for (var j = i + 1; j < N; j++) {
            var acc = 0;
            for (var k = 0; k < K; k++) {
                diff[i][j][k] <== sketch[i][k] - sketch[j][k];
                sq[i][j][k] <== diff[i][j][k] * diff[i][j][k];
                acc += sq[i][j][k];
            }
            dist[i][j] = acc;
            dist[j][i] = acc;
        }
    }

    // Krum scores: each row selects exactly KN others, all selected <= tau[i] <= all others
    signal selE[N][N];
    component selRange[N][N];
    signal score[N];
    for (var i = 0; i < N; i++) {
        var count = 0;
        var sum = 0;
        for (var j = 0; j < N; j++) {
            if (j == i) {
                sel[i][j] === 0;
            } else {
                sel[i][j] * (sel[i][j] - 1) === 0;
                // e = dist - tau; selected: e <= 0, not selected: e >= 0; x = e * (1 - 2 sel) >= 0
                selE[i][j] <== sel[i][j] * (dist[i][j] - tau[i]);
                selRange[i][j] = InRange(DB + 1);
                selRange[i][j].in <== dist[i][j] - tau[i] - 2 * selE[i][j];
                count += sel[i][j];
                sum += selE[i][j];
            }
        }
        count === KN;
        // sum_j sel * dist = sum_j sel * (dist - tau) + KN * tau
        score[i] <== sum + KN * tau[i];
    }

    // outliers: exactly F, every outlier's score >= outT >= every other score
    signal outE[N];
    component outRange[N];
    var nOut = 0;
    for (var i = 0; i < N; i++) {
        out[i] * (out[i] - 1) === 0;
        nOut += out[i];
        outE[i] <== out[i] * (score[i] - outT);
        outRange[i] = InRange(SCB + 1);
        outRange[i].in <== 2 * outE[i] - (score[i] - outT);
    }
    nOut === F;

    // 3. utilities in range and matching the published hash
    component uRange[NU];
    component uPack = Pack(NU, UB);
    for (var u = 0; u < NU; u++) {
        uRange[u] = InRange(UB);
        uRange[u].in <== util[u];
        uPack.in[u] <== util[u];
    }
    component uHash = PoseidonChain(ceildiv(NU, 252 \ UB));
    for (var e = 0; e < ceildiv(NU, 252 \ UB); e++) { uHash.in[e] <== uPack.out[e]; }
    uHash.out === utilHash;

    // value of base position p: sum over rotations r of the marginal at position (p - r) mod N
    var phi[N];
    for (var p = 0; p < N; p++) {
        var acc = 0;
        for (var rr = 0; rr < N; rr++) {
            var t = (p - rr + N) % N;
            var lo = t == 0 ? util[0] : util[2 + rr * (N - 1) + t - 1];
            var hi = t == N - 1 ? util[1] : util[2 + rr * (N - 1) + t];
            acc += hi - lo;
        }
        phi[p] = acc;
    }

    // the permutation: unpack, check the one-hot matrix against it, route values to slots
    component permBits = Num2Bits(N * PB);
    permBits.in <== perm;
    signal route[N][N];
    signal value[N];
    for (var p = 0; p < N; p++) {
        var idx = 0;
        for (var b = 0; b < PB; b++) { idx += permBits.out[p * PB + b] * (1 << b); }
        var one = 0;
        var which = 0;
        for (var i = 0; i < N; i++) {
            permHot[p][i] * (permHot[p][i] - 1) === 0;
            one += permHot[p][i];
            which += i * permHot[p][i];
        }
        one === 1;
        which === idx;
    }
    for (var i = 0; i < N; i++) {
        var once = 0;
        var acc = 0;
        for (var p = 0; p < N; p++) {
            once += permHot[p][i];
            route[p][i] <== permHot[p][i] * phi[p];
            acc += route[p][i];
        }
        once === 1;
        value[i] <== acc;
    }

    // 4. payout: w = max(value, 0) for non-outliers
    component sign[N];
    signal pos[N];
    signal w[N];
    var total = 0;
    for (var i = 0; i < N; i++) {
        sign[i] = Num2Bits(VB + 1);
        sign[i].in <== value[i] + (1 << VB);
        pos[i] <== sign[i].out[VB] * value[i];
        w[i] <== (1 - out[i]) * pos[i];
        total += w[i];
    }
    // nobody positive: the non-outliers split equally
    signal isZero;
    isZero <== 1 - total * zeroInv;
    total * isZero === 0;
    signal eq[N];
    var W = 0;
    for (var i = 0; i < N; i++) {
        eq[i] <== isZero * (1 - out[i]);
        W += w[i] + eq[i];
    }
    signal weight;
    weight <== W;

    // 10000 * w_i = q_i * W + r_i, 0 <= r_i < W, q_i < 2^14
    signal qW[N];
    component qRange[N];
    component rRange[N];
    component rBelow[N];
    var floorSum = 0;
    for (var i = 0; i < N; i++) {
        qW[i] <== q[i] * weight;
        10000 * (w[i] + eq[i]) === qW[i] + r[i];
        qRange[i] = InRange(14);
        qRange[i].in <== q[i];
        rRange[i] = InRange(RB);
        rRange[i].in <== r[i];
        rBelow[i] = InRange(RB);
        rBelow[i].in <== weight - 1 - r[i];
        floorSum += q[i];
    }
    // leftover points to the largest remainders, ties to the lower slot: key = r * 2^PB + (N - 1 - i)
    signal bonusE[N];
    component bonusRange[N];
    var nBonus = 0;
    for (var i = 0; i < N; i++) {
        bonus[i] * (bonus[i] - 1) === 0;
        nBonus += bonus[i];
        var key = r[i] * (1 << PB) + (N - 1 - i);
        // bonus: key > T, i.e. key - T - 1 >= 0; no bonus: T - key >= 0
        bonusE[i] <== bonus[i] * (key - bonusT);
        bonusRange[i] = InRange(RB + PB + 2);
        bonusRange[i].in <== 2 * bonusE[i] - (key - bonusT) - bonus[i];
    }
    nBonus === 10000 - floorSum;

    for (var e = 0; e < NBE; e++) {
        var acc = 0;
        for (var j = 0; j < 18; j++) {
            if (e * 18 + j < N) { acc += (q[e * 18 + j] + bonus[e * 18 + j]) * (1 << (14 * j)); }
        }
        bpsPacked[e] === acc;
    }
}
