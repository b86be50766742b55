// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IMarket, TrainerProxy} from "./base/TrainerProxy.sol";

/// @notice Test only: a trainer contract that tries to withdraw again from inside its receive hook:
/// `withdrawTo` the same task, `withdraw` the same task, and `withdrawTo` another task.
contract ReentrantTrainer is TrainerProxy {
    uint256 public reentryAttempts;
    /// @notice A re-entrant withdrawal from the attacked task went through (it must not).
    bool public reentrySucceeded;
    /// @notice The re-entrant withdrawal from the other task went through (what that task owes, once).
    bool public otherTaskPaid;
    bool private _armed;
    uint256 private _taskId;
    uint256 private _otherTaskId;

    constructor(IMarket market_) TrainerProxy(market_) {}

    /// @notice Withdraw what `taskId` owes this contract (the attack starts here); the receive hook
    /// re-enters once, trying `taskId` twice and `otherTaskId` once.
    function attack(uint256 taskId, uint256 otherTaskId) external {
        _taskId = taskId;
        _otherTaskId = otherTaskId;
        _armed = true;
        market.withdrawTo(taskId, payable(address(this)));
        _armed = false;
    }

    receive() external payable {
        if (!_armed) return;
        _armed = false;
        reentryAttempts += 1;
        try market.withdrawTo(_taskId, payable(address(this))) {
            reentrySucceeded = true;
        } catch {}
        reentryAttempts += 1;
        try market.withdraw(_taskId) {
            reentrySucceeded = true;
        } catch {}
        reentryAttempts += 1;
        try market.withdrawTo(_otherTaskId, payable(address(this))) {
            otherTaskPaid = true;
        } catch {}
    }
}
