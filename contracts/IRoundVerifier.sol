// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IRoundVerifier
/// @notice A contract that checks a proof that a round's result (outliers, shares,
/// basis points) follows the task's published rules from the trainers' committed
/// inputs. A task that names a verifier credits nothing unless it returns true.
interface IRoundVerifier {
    /// @notice Check `proof` for the result of round `round` of task `taskId`.
    /// @param taskId the task
    /// @param round the round being settled
    /// @param submissionsDigest running keccak256 digest, after this round's last submission, chained over
    ///        (join index, cid, commitment) of every submission in submission order
    /// @param modelCid sha2-256 digest of the new global model's CID
    /// @param receiptCid sha2-256 digest of the round receipt's CID
    /// @param bps basis points per submitter, in submission order
    /// @param proof the proof bytes, in the verifier's own encoding
    /// @return ok true when the proof verifies
    function verifyRound(
        uint256 taskId,
        uint256 round,
        bytes32 submissionsDigest,
        bytes32 modelCid,
        bytes32 receiptCid,
        uint16[] calldata bps,
        bytes calldata proof
    ) external view returns (bool ok);
}
