// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @notice Test only: a plain ERC-20 anyone can mint.
contract TestToken is ERC20 {
    constructor() ERC20("Test Token", "TST") {}

    /// @notice Mint `amount` to `to`.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }
}
