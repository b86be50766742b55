// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IMarket {
    function join(uint256 taskId) external;
    function submitUpdate(uint256 taskId, uint256 round, bytes32 cid, bytes32 commitment) external;
    function withdraw(address token) external;
}

/// @notice Test only: a trainer that is a contract, acting on the market through these wrappers.
abstract contract TrainerProxy {
    IMarket public immutable market;

    constructor(IMarket market_) {
        market = market_;
    }

    /// @notice Join a task.
    function join(uint256 taskId) external {
        market.join(taskId);
    }

    /// @notice Submit an update.
    function submit(uint256 taskId, uint256 round, bytes32 cid, bytes32 commitment) external {
        market.submitUpdate(taskId, round, cid, commitment);
    }
}
