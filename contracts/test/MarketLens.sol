// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice Test only: reads many tasks and seats of a market in one call (the invariant fuzzer checks
/// them after every step; one EVM call instead of one per task and per seat).
contract MarketLens {
    /// @notice For each task: `getTask`'s raw return data; for each (task, trainer) pair, task-major:
    /// `seat`'s raw return data; and the market's balance.
    function read(address market, uint256[] calldata taskIds, address[] calldata trainers)
        external
        view
        returns (bytes[] memory tasks, bytes[] memory seats, uint256 balance)
    {
        tasks = new bytes[](taskIds.length);
        seats = new bytes[](taskIds.length * trainers.length);
        for (uint256 i = 0; i < taskIds.length; ++i) {
            tasks[i] = _read(market, abi.encodeWithSignature("getTask(uint256)", taskIds[i]));
            for (uint256 j = 0; j < trainers.length; ++j) {
                seats[i * trainers.length + j] =
                    _read(market, abi.encodeWithSignature("seat(uint256,address)", taskIds[i], trainers[j]));
            }
        }
        balance = market.balance;
    }

    function _read(address market, bytes memory data) private view returns (bytes memory out) {
        bool ok;
        (ok, out) = market.staticcall(data);
        require(ok, "read failed");
    }
}
