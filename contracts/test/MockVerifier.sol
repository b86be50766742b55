// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IRoundVerifier} from "../IRoundVerifier.sol";

/// @notice Test only: a round verifier whose answer is set by the test; `supports_` false makes it
/// deny the IRoundVerifier interface over ERC-165 (a contract a market must refuse).
contract MockVerifier is IRoundVerifier {
    bool public answer;
    bool public immutable implementsInterface;

    constructor(bool supports_, bool answer_) {
        implementsInterface = supports_;
        answer = answer_;
    }

    /// @notice Set what `verifyRound` returns.
    function setAnswer(bool answer_) external {
        answer = answer_;
    }

    /// @notice Returns the answer set by the test, whatever the proof.
    function verifyRound(uint256, uint256, bytes32, bytes32, bytes32, bytes32, uint16[] calldata, uint256, bytes calldata)
        external
        view
        returns (bool)
    {
        return answer;
    }

    /// @notice A mock calls nothing.
    function components() external pure returns (address[] memory) {
        return new address[](0);
    }

    /// @inheritdoc IERC165
    function supportsInterface(bytes4 interfaceId) external view returns (bool) {
        if (interfaceId == type(IERC165).interfaceId) return true;
        return implementsInterface && interfaceId == type(IRoundVerifier).interfaceId;
    }
}
