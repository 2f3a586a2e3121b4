// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @notice The two AuthRegistry checks the entity contracts rely on.
interface IAuthRegistry {
    function isAuthorized(address user) external view returns (bool);

    function isAdmin(address user) external view returns (bool);
}
