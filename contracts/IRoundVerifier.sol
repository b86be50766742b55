// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";

/// @title IRoundVerifier
/// @notice A contract that checks a proof that a round's result (outliers, shares,
/// basis points) follows the task's published rules from the trainers' committed
/// inputs. A task that names a verifier credits nothing unless it returns true.
/// A market accepts a verifier only if it answers ERC-165 `supportsInterface` for this interface's id,
/// and only if its code hash, and that of every contract it names in `components`, is on the market's allowlist.
interface IRoundVerifier is IERC165 {
    /// @notice Every contract `verifyRound` calls (e.g. one Groth16 verifier per round size), fixed at deployment.
    function components() external view returns (address[] memory);

    /// @notice Check `proof` for the result of round `round` of task `taskId`.
    /// @param taskId the task
    /// @param round the round being settled
    /// @param submissionsDigest running keccak256 digest, after this round's last reveal, chained over
    ///        (join index, cid, commitment) of every reveal in reveal order
    /// @param seed the round's seed, fixed by the block that closed its reveal window
    /// @param modelCid sha2-256 digest of the new global model's CID
    /// @param receiptCid sha2-256 digest of the round receipt's CID
    /// @param bps basis points per revealed update, in join order
    /// @param lostMask bit j: the j-th revealed update is marked unavailable or invalid (its trainer loses
    ///        its stake); a verifier accepts only marks its proof backs
    /// @param proof the proof bytes, in the verifier's own encoding
    /// @return ok true when the proof verifies
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
    ) external view returns (bool ok);
}
