// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

interface IMarket {
    function join(uint256 taskId) external;
    function submitUpdate(uint256 taskId, uint256 round, bytes32 cid, bytes32 commitment) external;
    function withdraw(address token) external;
}

/// @notice Test only: a trainer contract that tries to withdraw again from inside its receive hook.
contract ReentrantTrainer {
    IMarket public immutable market;
    uint256 public reentryAttempts;
    bool public reentrySucceeded;

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
