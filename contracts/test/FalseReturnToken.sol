// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice Test only: a token whose transfers return false instead of reverting (as some old tokens do).
contract FalseReturnToken {
    mapping(address account => uint256) public balanceOf;
    mapping(address owner => mapping(address spender => uint256)) public allowance;

    /// @notice Mint `amount` to `to`.
    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
    }

    /// @notice Approve `spender`.
    function approve(address spender, uint256 amount) external returns (bool) {
        allowance[msg.sender][spender] = amount;
        return true;
    }

    /// @notice Always fails by returning false.
    function transfer(address, uint256) external pure returns (bool) {
        return false;
    }

    /// @notice Always fails by returning false.
    function transferFrom(address, address, uint256) external pure returns (bool) {
        return false;
    }
}
