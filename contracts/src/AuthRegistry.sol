// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title AuthRegistry
/// @notice Who may act on the civic platform. The deployer is the owner; the
/// owner grants and revokes "authorized user" and "admin" roles. An admin
/// (and the owner) counts as authorized.
contract AuthRegistry {
    event UserAuthorized(address user);
    event UserRevoked(address user);
    event AdminAuthorized(address admin);
    event AdminRevoked(address admin);

    address public owner;
    mapping(address => bool) public authorizedUsers;
    mapping(address => bool) public adminUsers;

    modifier onlyOwner() {
        require(msg.sender == owner, "AuthRegistry: not owner");
        _;
    }

    constructor() {
        owner = msg.sender;
    }

    function isAuthorized(address user) external view returns (bool) {
        return user == owner || authorizedUsers[user] || adminUsers[user];
    }

    function isAdmin(address user) external view returns (bool) {
        return user == owner || adminUsers[user];
    }

    function authorizeUser(address user) external onlyOwner {
        require(user != address(0), "AuthRegistry: zero address");
        authorizedUsers[user] = true;
        emit UserAuthorized(user);
    }

    function revokeUser(address user) external onlyOwner {
        authorizedUsers[user] = false;
        emit UserRevoked(user);
    }

    function authorizeAdmin(address admin) external onlyOwner {
        require(admin != address(0), "AuthRegistry: zero address");
        adminUsers[admin] = true;
        emit AdminAuthorized(admin);
    }

    function revokeAdmin(address admin) external onlyOwner {
        adminUsers[admin] = false;
        emit AdminRevoked(admin);
    }
}
