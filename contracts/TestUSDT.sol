// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title TestUSDT: the sandbox stand-in for Tether USD (ERC-20, 6 decimals) on the dev chain.
/// @notice It keeps the two quirks of mainnet Tether that payout code must live with:
///  * `transfer`, `transferFrom` and `approve` return nothing (mainnet Tether predates the
///    ERC-20 `returns (bool)`), so a caller that decodes a bool from the return data fails
///    exactly as it would against the real token; success is the receipt's status;
///  * `approve` from a non-zero allowance to another non-zero allowance reverts.
/// Failures revert (mainnet Tether reverts too), so a bad transfer is a receipt with status 0.
/// Only the owner mints: the sandbox funds wallets with it.
contract TestUSDT {
    string public constant name = "Tether USD (TelePay sandbox)";
    string public constant symbol = "USDT";
    uint8 public constant decimals = 6;

    address public immutable owner;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    constructor() {
        owner = msg.sender;
    }

    function mint(address to, uint256 value) external {
        require(msg.sender == owner, "only owner");
        require(to != address(0), "mint to zero address");
        totalSupply += value;
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function transfer(address to, uint256 value) external {
        _move(msg.sender, to, value);
    }

    function transferFrom(address from, address to, uint256 value) external {
        uint256 allowed = allowance[from][msg.sender];
        require(allowed >= value, "allowance too low");
        if (allowed != type(uint256).max) {
            allowance[from][msg.sender] = allowed - value;
        }
        _move(from, to, value);
    }

    function approve(address spender, uint256 value) external {
        // Mainnet Tether's guard against the approve front-running race.
        require(value == 0 || allowance[msg.sender][spender] == 0, "reset allowance to 0 first");
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
    }

    function _move(address from, address to, uint256 value) private {
        require(to != address(0), "transfer to zero address");
        uint256 balance = balanceOf[from];
        require(balance >= value, "balance too low");
        balanceOf[from] = balance - value;
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
