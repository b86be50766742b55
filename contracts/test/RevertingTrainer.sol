// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IMarketR {
    function join(uint256 taskId) external;
    function submitUpdate(uint256 taskId, uint256 round, bytes32 cid, bytes32 commitment) external;
    function withdraw(address token) external;
}

/// @notice Test only: a trainer contract that refuses every ETH transfer.
contract RevertingTrainer {
    IMarketR public immutable market;

    constructor(IMarketR market_) {
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

    /// @notice Try to withdraw (fails: this contract refuses ETH).
    function pull() external {
        market.withdraw(address(0));
    }

    receive() external payable {
        revert("no ETH, thanks");
    }
}
