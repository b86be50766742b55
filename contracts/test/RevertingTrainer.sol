// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IMarket, TrainerProxy} from "./base/TrainerProxy.sol";

/// @notice Test only: a trainer contract that refuses every ETH transfer.
contract RevertingTrainer is TrainerProxy {
    constructor(IMarket market_) TrainerProxy(market_) {}

    /// @notice Try to withdraw (fails: this contract refuses ETH).
    function pull() external {
        market.withdraw(address(0));
    }

    receive() external payable {
        revert("no ETH, thanks");
    }
}
