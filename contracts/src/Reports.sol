// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IAuthRegistry} from "./IAuthRegistry.sol";

/// @title Reports
/// @notice Authorized users file reports and up- or downvote them, once each,
/// and may take their vote back. Admins resolve and reopen reports; the
/// creator or an admin removes one. `removeVote`, `reopenReport` and
/// `removeReport` change state without emitting an event.
contract Reports {
    event ReportCreated(uint256 indexed reportId, address indexed creator, string titleCid, string descriptionCid);
    event ReportUpvoted(uint256 indexed reportId, address indexed voter);
    event ReportDownvoted(uint256 indexed reportId, address indexed voter);
    event ReportResolved(uint256 indexed reportId, address indexed resolver, uint256 resolvedAt);

    struct Report {
        string titleCid;
        string descriptionCid;
        uint256 upvotes;
        uint256 downvotes;
        address creator;
        bool resolved;
        uint256 createdAt;
        uint256 resolvedAt;
        bool removed;
    }

    uint8 private constant NO_VOTE = 0;
    uint8 private constant UP = 1;
    uint8 private constant DOWN = 2;

    IAuthRegistry private immutable auth;
    uint256 public reportCount;
    mapping(uint256 => Report) private reports;
    mapping(uint256 => mapping(address => uint8)) private votes;

    constructor(address authRegistry) {
        auth = IAuthRegistry(authRegistry);
    }

    modifier onlyAuthorized() {
        require(auth.isAuthorized(msg.sender), "Reports: not authorized");
        _;
    }

    modifier onlyAdmin() {
        require(auth.isAdmin(msg.sender), "Reports: not admin");
        _;
    }

    modifier live(uint256 reportId) {
        require(reportId >= 1 && reportId <= reportCount, "Reports: no such report");
        require(!reports[reportId].removed, "Reports: removed");
        _;
    }

    function createReport(string calldata titleCid, string calldata descriptionCid)
        external
        onlyAuthorized
        returns (uint256)
    {
        require(bytes(titleCid).length > 0, "Reports: empty title");
        uint256 id = ++reportCount;
        Report storage r = reports[id];
        r.titleCid = titleCid;
        r.descriptionCid = descriptionCid;
        r.creator = msg.sender;
        r.createdAt = block.timestamp;
        emit ReportCreated(id, msg.sender, titleCid, descriptionCid);
        return id;
    }

    function upvoteReport(uint256 reportId) external onlyAuthorized live(reportId) {
        _vote(reportId, UP);
        emit ReportUpvoted(reportId, msg.sender);
    }

    function downvoteReport(uint256 reportId) external onlyAuthorized live(reportId) {
        _vote(reportId, DOWN);
        emit ReportDownvoted(reportId, msg.sender);
    }

    /// @notice Takes back the caller's vote. Emits no event.
    function removeVote(uint256 reportId) external live(reportId) {
        Report storage r = reports[reportId];
        uint8 vote = votes[reportId][msg.sender];
        require(vote != NO_VOTE, "Reports: no vote to remove");
        if (vote == UP) {
            r.upvotes -= 1;
        } else {
            r.downvotes -= 1;
        }
        votes[reportId][msg.sender] = NO_VOTE;
    }

    function resolveReport(uint256 reportId) external onlyAdmin live(reportId) {
        Report storage r = reports[reportId];
        require(!r.resolved, "Reports: already resolved");
        r.resolved = true;
        r.resolvedAt = block.timestamp;
        emit ReportResolved(reportId, msg.sender, block.timestamp);
    }

    /// @notice Undoes a resolution. Emits no event.
    function reopenReport(uint256 reportId) external onlyAdmin live(reportId) {
        Report storage r = reports[reportId];
        require(r.resolved, "Reports: not resolved");
        r.resolved = false;
        r.resolvedAt = 0;
    }

    /// @notice The creator or an admin removes a report. Emits no event.
    function removeReport(uint256 reportId) external live(reportId) {
        Report storage r = reports[reportId];
        require(msg.sender == r.creator || auth.isAdmin(msg.sender), "Reports: not creator or admin");
        r.removed = true;
    }

    function getReport(uint256 reportId)
        external
        view
        returns (
            string memory titleCid,
            string memory descriptionCid,
            uint256 upvotes,
            uint256 downvotes,
            address creator,
            bool resolved,
            uint256 createdAt,
            uint256 resolvedAt,
            bool removed
        )
    {
        require(reportId >= 1 && reportId <= reportCount, "Reports: no such report");
        Report storage r = reports[reportId];
        return (
            r.titleCid,
            r.descriptionCid,
            r.upvotes,
            r.downvotes,
            r.creator,
            r.resolved,
            r.createdAt,
            r.resolvedAt,
            r.removed
        );
    }

    function _vote(uint256 reportId, uint8 vote) private {
        require(votes[reportId][msg.sender] == NO_VOTE, "Reports: already voted");
        votes[reportId][msg.sender] = vote;
        if (vote == UP) {
            reports[reportId].upvotes += 1;
        } else {
            reports[reportId].downvotes += 1;
        }
    }
}
