// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IMarket {
    function join(uint256 taskId) external payable;
    function commit(uint256 taskId, uint256 round, bytes32 hash) external;
    function reveal(uint256 taskId, uint256 round, bytes32 cid, bytes32 commitment, bytes32 salt) external;
    function leave(uint256 taskId) external;
    function withdraw(uint256 taskId) external;
    function withdrawTo(uint256 taskId, address payable recipient) external;
}

/// @notice Test only: a trainer that is a contract, acting on the market through these wrappers.
abstract contract TrainerProxy {
    IMarket public immutable market;

    constructor(IMarket market_) {
        market = market_;
    }

    /// @notice Join a task, forwarding the stake sent with this call.
    function join(uint256 taskId) external payable {
        market.join{value: msg.value}(taskId);
    }

    /// @notice Commit to an update.
    function commit(uint256 taskId, uint256 round, bytes32 hash) external {
        market.commit(taskId, round, hash);
    }

    /// @notice Reveal an update.
    function reveal(uint256 taskId, uint256 round, bytes32 cid, bytes32 commitment, bytes32 salt) external {
        market.reveal(taskId, round, cid, commitment, salt);
    }

    /// @notice Leave a task between rounds.
    function leave(uint256 taskId) external {
        market.leave(taskId);
    }
}
