// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IRoundVerifier} from "./IRoundVerifier.sol";

/// @title RoundVerifier
/// @notice Checks the Groth16 proof that a round's outliers and basis points follow the task's
/// rules (zk/round.circom) from the trainers' on-chain sketch commitments and the utilities
/// published in the round receipt. One Groth16 verifier per number of valid submitters, fixed
/// at deployment; a task names this contract as its verifier.
/// @dev `proof` is `abi.encode(uint256[8] groth16, bytes32 prevDigest, uint256[3][] subs,
/// uint256 rejectedMask, uint256 utilHash)` where `subs` are the round's submissions in
/// reveal order as (join index, cid, commitment), `prevDigest` the running digest before
/// the first of them, and bit j of `rejectedMask` marks the j-th submitter (join order) whose
/// update was malformed (it must get 0 bps and is left out of the proof). The chain of
/// `subs` from `prevDigest` must end at the market's digest, so they are exactly this round's
/// submissions. Public inputs: binding (chain, market, this contract, task, round, model and
/// receipt CIDs), the base permutation drawn from the round seed, the valid commitments, the
/// packed bps of the valid submitters and the utilities hash.
contract RoundVerifier is IRoundVerifier {
    uint256 private constant FIELD = 21888242871839275222246405745257275088548364400416034343698204186575808495617;

    /// @notice Sketch length, outliers per round size, and verifiers are fixed at deployment.
    uint256 public immutable sketchK;
    mapping(uint256 n => address) public verifierFor;
    mapping(uint256 n => bytes4) public selectorFor;
    address[] private _verifiers;

    error RoundVerifierBadConfig();

    /// @dev The Groth16 verifier of round size n is called as snarkjs names it for its public input count
    /// (`verifyProof(uint256[2],uint256[2][2],uint256[2],uint256[N])`, N = 3 + n + ceil(n / 18)): the selector
    /// is derived here, never given, so a verifier of another size (or any other contract) cannot answer for n.
    constructor(uint256 k, uint256[] memory ns, address[] memory verifiers) {
        if (ns.length != verifiers.length) revert RoundVerifierBadConfig();
        sketchK = k;
        for (uint256 i = 0; i < ns.length; ++i) {
            if (verifiers[i] == address(0) || verifierFor[ns[i]] != address(0)) revert RoundVerifierBadConfig();
            verifierFor[ns[i]] = verifiers[i];
            if (ns[i] == 0 || ns[i] > 256) revert RoundVerifierBadConfig();
            selectorFor[ns[i]] = bytes4(
                keccak256(
                    abi.encodePacked(
                        "verifyProof(uint256[2],uint256[2][2],uint256[2],uint256[",
                        _decimal(3 + ns[i] + (ns[i] + 17) / 18),
                        "])"
                    )
                )
            );
        }
        _verifiers = verifiers;
    }

    /// @dev `x` in decimal digits (x < 1000 here; OpenZeppelin's Strings needs a Cancun VM for `mcopy`).
    function _decimal(uint256 x) private pure returns (bytes memory out) {
        if (x == 0) return "0";
        uint256 len = 0;
        for (uint256 y = x; y != 0; y /= 10) ++len;
        out = new bytes(len);
        for (; x != 0; x /= 10) out[--len] = bytes1(uint8(48 + (x % 10)));
    }

    /// @inheritdoc IRoundVerifier
    function components() external view returns (address[] memory) {
        return _verifiers;
    }

    struct Decoded {
        uint256[8] g;
        bytes32 prevDigest;
        uint256[3][] subs;
        uint256 rejected;
        uint256 utilHash;
    }

    /// @inheritdoc IRoundVerifier
    function verifyRound(
        uint256 taskId,
        uint256 round,
        bytes32 submissionsDigest,
        bytes32 seed,
        bytes32 modelCid,
        bytes32 receiptCid,
        uint16[] calldata bps,
        uint256 lostMask,
        bytes calldata proof
    ) external view returns (bool) {
        if (!_lostBacked(lostMask, proof)) return false;
        return _verify(_binding(taskId, round, modelCid, receiptCid), submissionsDigest, seed, bps, proof);
    }

    function _binding(uint256 taskId, uint256 round, bytes32 modelCid, bytes32 receiptCid)
        private
        view
        returns (uint256)
    {
        return uint256(
            keccak256(abi.encode(block.chainid, msg.sender, address(this), taskId, round, modelCid, receiptCid))
        ) % FIELD;
    }

    /// @dev Only updates the proof leaves out as malformed (its `rejectedMask`) may lose their stakes.
    function _lostBacked(uint256 lostMask, bytes calldata proof) private pure returns (bool) {
        if (lostMask == 0) return true;
        (,,, uint256 rejected,) = abi.decode(proof, (uint256[8], bytes32, uint256[3][], uint256, uint256));
        return lostMask & ~rejected == 0;
    }

    /// @inheritdoc IERC165
    function supportsInterface(bytes4 interfaceId) external pure returns (bool) {
        return interfaceId == type(IRoundVerifier).interfaceId || interfaceId == type(IERC165).interfaceId;
    }

    function _verify(
        uint256 binding,
        bytes32 submissionsDigest,
        bytes32 seed,
        uint16[] calldata bps,
        bytes calldata proof
    )
        private
        view
        returns (bool)
    {
        Decoded memory d = _decode(proof);
        if (d.subs.length != bps.length || d.subs.length > 256) return false;
        if (_chain(d.prevDigest, d.subs) != submissionsDigest) return false;
        _sortByJoinIndex(d.subs);
        uint256 n = 0;
        for (uint256 j = 0; j < bps.length; ++j) {
            if ((d.rejected >> j) & 1 == 0) ++n;
            else if (bps[j] != 0) return false;
        }
        // nothing valid: no Groth16 proof backs a claim that every update is malformed, so it is refused (the round
        // goes to the backup, then to the fallback, which pays only updates proved available)
        if (n == 0) return false;
        if (verifierFor[n] == address(0)) return false;
        uint256[] memory pub = _publicInputs(d, bps, n, seed);
        pub[0] = binding;
        return _call(verifierFor[n], selectorFor[n], d.g, pub);
    }

    function _decode(bytes calldata proof) private pure returns (Decoded memory d) {
        (d.g, d.prevDigest, d.subs, d.rejected, d.utilHash) =
            abi.decode(proof, (uint256[8], bytes32, uint256[3][], uint256, uint256));
    }

    function _chain(bytes32 digest, uint256[3][] memory subs) private pure returns (bytes32) {
        for (uint256 i = 0; i < subs.length; ++i) {
            digest = keccak256(abi.encode(digest, subs[i][0], bytes32(subs[i][1]), bytes32(subs[i][2])));
        }
        return digest;
    }

    /// @dev Insertion sort by join index (distinct: one submission per trainer and round).
    function _sortByJoinIndex(uint256[3][] memory subs) private pure {
        for (uint256 i = 1; i < subs.length; ++i) {
            uint256[3] memory s = subs[i];
            uint256 j = i;
            while (j > 0 && subs[j - 1][0] > s[0]) {
                subs[j] = subs[j - 1];
                --j;
            }
            subs[j] = s;
        }
    }

    /// @dev [binding (filled by the caller), perm, commitments..., packed bps..., utilHash]
    function _publicInputs(Decoded memory d, uint16[] calldata bps, uint256 n, bytes32 seed)
        private
        pure
        returns (uint256[] memory pub)
    {
        uint256 nb = (n + 17) / 18;
        pub = new uint256[](3 + n + nb);
        pub[1] = _permutation(seed, n);
        uint256 v = 0;
        for (uint256 j = 0; j < bps.length; ++j) {
            if ((d.rejected >> j) & 1 == 1) continue;
            pub[2 + v] = d.subs[j][2];
            pub[2 + n + v / 18] |= uint256(bps[j]) << (14 * (v % 18));
            ++v;
        }
        pub[2 + n + nb] = d.utilHash;
    }

    /// @dev Fisher-Yates over the n valid slots, j = keccak(seed, i) mod (i + 1); packed pb bits per slot.
    function _permutation(bytes32 digest, uint256 n) private pure returns (uint256 packed) {
        uint256 pb = 1;
        while ((1 << pb) < n) ++pb;
        uint256[] memory perm = new uint256[](n);
        for (uint256 i = 0; i < n; ++i) perm[i] = i;
        for (uint256 i = n - 1; i > 0; --i) {
            uint256 j = uint256(keccak256(abi.encode(digest, i))) % (i + 1);
            (perm[i], perm[j]) = (perm[j], perm[i]);
        }
        for (uint256 p = 0; p < n; ++p) packed |= perm[p] << (pb * p);
    }

    /// @dev verifyProof(uint256[2],uint256[2][2],uint256[2],uint256[N]): all static, so the
    /// calldata is the selector followed by the words in order.
    function _call(address verifier, bytes4 selector, uint256[8] memory g, uint256[] memory pub)
        private
        view
        returns (bool)
    {
        bytes memory data = abi.encodePacked(selector, g, pub);
        (bool ok, bytes memory ret) = verifier.staticcall(data);
        return ok && ret.length == 32 && abi.decode(ret, (bool));
    }
}
