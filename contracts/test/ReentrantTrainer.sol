// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IMarket, TrainerProxy} from "./base/TrainerProxy.sol";

/// @notice Test only: a trainer contract that tries to withdraw again from inside its receive hook.
contract ReentrantTrainer is TrainerProxy {
    uint256 public reentryAttempts;
    bool public reentrySucceeded;

    constructor(IMarket market_) TrainerProxy(market_) {}

    /// @notice Withdraw (the attack starts here).
    function attack() external {
        market.withdraw(address(0));
    }

    receive() external payable {
        if (reentryAttempts < 3) {
            reentryAttempts += 1;
            try market.withdraw(address(0)) {
                reentrySucceeded = true;
            } catch {}
        }
    }
}
