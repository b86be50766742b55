// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IMarket, TrainerProxy} from "./base/TrainerProxy.sol";

/// @notice Test only: a trainer contract that refuses every ETH transfer; it withdraws to another
/// address with `withdrawTo`.
contract RevertingTrainer is TrainerProxy {
    constructor(IMarket market_) TrainerProxy(market_) {}

    /// @notice Try to withdraw to itself (fails: this contract refuses ETH).
    function pull(uint256 taskId) external {
        market.withdraw(taskId);
    }

    /// @notice Withdraw what `taskId` owes this contract to `recipient`.
    function pullTo(uint256 taskId, address payable recipient) external {
        market.withdrawTo(taskId, recipient);
    }

    receive() external payable {
        revert("no ETH, thanks");
    }
}
