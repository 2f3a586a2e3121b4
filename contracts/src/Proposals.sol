// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IAuthRegistry} from "./IAuthRegistry.sol";

/// @title Proposals
/// @notice Admins create proposals; authorized users vote yes or no, once
/// each, and may take their vote back. `removeVote` and
/// `extendProposalDeadline` change state without emitting an event.
contract Proposals {
    event ProposalCreated(
        uint256 indexed proposalId,
        address indexed creator,
        string titleCid,
        string shortDescriptionCid,
        string descriptionInDetailsCid,
        uint256 categoryId,
        uint256 expiredDate
    );
    event ProposalVotedYes(uint256 indexed proposalId, address indexed voter);
    event ProposalVotedNo(uint256 indexed proposalId, address indexed voter);
    event ProposalStatusChanged(uint256 indexed proposalId, bool activeStatus);
    event ProposalExpired(uint256 indexed proposalId, uint256 expiredAt);

    struct Proposal {
        string titleCid;
        string shortDescriptionCid;
        string descriptionInDetailsCid;
        uint256 yesVotes;
        uint256 noVotes;
        address creator;
        bool activeStatus;
        uint256 expiredDate;
        uint256 categoryId;
        uint256 createdAt;
        uint256 updatedAt;
        bool removed;
    }

    uint8 private constant NO_VOTE = 0;
    uint8 private constant YES = 1;
    uint8 private constant NO = 2;

    IAuthRegistry private immutable auth;
    uint256 public proposalCount;
    mapping(uint256 => Proposal) private proposals;
    mapping(uint256 => mapping(address => uint8)) private votes;

    constructor(address authRegistry) {
        auth = IAuthRegistry(authRegistry);
    }

    modifier onlyAuthorized() {
        require(auth.isAuthorized(msg.sender), "Proposals: not authorized");
        _;
    }

    modifier onlyAdmin() {
        require(auth.isAdmin(msg.sender), "Proposals: not admin");
        _;
    }

    modifier live(uint256 proposalId) {
        require(proposalId >= 1 && proposalId <= proposalCount, "Proposals: no such proposal");
        require(!proposals[proposalId].removed, "Proposals: removed");
        _;
    }

    function createProposal(
        string calldata titleCid,
        string calldata shortDescriptionCid,
        string calldata descriptionInDetailsCid,
        uint256 categoryId,
        uint256 expiredDate
    ) external onlyAdmin returns (uint256) {
        require(bytes(titleCid).length > 0, "Proposals: empty title");
        require(expiredDate > block.timestamp, "Proposals: expiry in the past");
        uint256 id = ++proposalCount;
        Proposal storage p = proposals[id];
        p.titleCid = titleCid;
        p.shortDescriptionCid = shortDescriptionCid;
        p.descriptionInDetailsCid = descriptionInDetailsCid;
        p.creator = msg.sender;
        p.activeStatus = true;
        p.expiredDate = expiredDate;
        p.categoryId = categoryId;
        p.createdAt = block.timestamp;
        p.updatedAt = block.timestamp;
        emit ProposalCreated(
            id, msg.sender, titleCid, shortDescriptionCid, descriptionInDetailsCid, categoryId, expiredDate
        );
        return id;
    }

    function voteYes(uint256 proposalId) external onlyAuthorized live(proposalId) {
        _vote(proposalId, YES);
        emit ProposalVotedYes(proposalId, msg.sender);
    }

    function voteNo(uint256 proposalId) external onlyAuthorized live(proposalId) {
        _vote(proposalId, NO);
        emit ProposalVotedNo(proposalId, msg.sender);
    }

    /// @notice Takes back the caller's vote. Emits no event.
    function removeVote(uint256 proposalId) external live(proposalId) {
        Proposal storage p = proposals[proposalId];
        uint8 vote = votes[proposalId][msg.sender];
        require(vote != NO_VOTE, "Proposals: no vote to remove");
        if (vote == YES) {
            p.yesVotes -= 1;
        } else {
            p.noVotes -= 1;
        }
        votes[proposalId][msg.sender] = NO_VOTE;
        p.updatedAt = block.timestamp;
    }

    function changeProposalStatus(uint256 proposalId, bool activeStatus) external onlyAdmin live(proposalId) {
        Proposal storage p = proposals[proposalId];
        p.activeStatus = activeStatus;
        p.updatedAt = block.timestamp;
        emit ProposalStatusChanged(proposalId, activeStatus);
    }

    /// @notice Moves the deadline later. Emits no event.
    function extendProposalDeadline(uint256 proposalId, uint256 newExpiredDate) external onlyAdmin live(proposalId) {
        Proposal storage p = proposals[proposalId];
        require(newExpiredDate > p.expiredDate, "Proposals: deadline not later");
        p.expiredDate = newExpiredDate;
        p.updatedAt = block.timestamp;
    }

    /// @notice Ends a proposal now: inactive, with the current time as its expiry.
    function expireProposal(uint256 proposalId) external onlyAdmin live(proposalId) {
        Proposal storage p = proposals[proposalId];
        p.activeStatus = false;
        p.expiredDate = block.timestamp;
        p.updatedAt = block.timestamp;
        emit ProposalExpired(proposalId, block.timestamp);
    }

    /// @notice The creator or an admin removes a proposal; it reads as inactive.
    function removeProposal(uint256 proposalId) external live(proposalId) {
        Proposal storage p = proposals[proposalId];
        require(msg.sender == p.creator || auth.isAdmin(msg.sender), "Proposals: not creator or admin");
        p.removed = true;
        p.activeStatus = false;
        p.updatedAt = block.timestamp;
        emit ProposalStatusChanged(proposalId, false);
    }

    function getProposal(uint256 proposalId)
        external
        view
        returns (
            string memory titleCid,
            string memory shortDescriptionCid,
            string memory descriptionInDetailsCid,
            uint256 yesVotes,
            uint256 noVotes,
            address creator,
            bool activeStatus,
            uint256 expiredDate,
            uint256 categoryId,
            uint256 createdAt,
            uint256 updatedAt,
            bool removed
        )
    {
        require(proposalId >= 1 && proposalId <= proposalCount, "Proposals: no such proposal");
        Proposal storage p = proposals[proposalId];
        return (
            p.titleCid,
            p.shortDescriptionCid,
            p.descriptionInDetailsCid,
            p.yesVotes,
            p.noVotes,
            p.creator,
            p.activeStatus,
            p.expiredDate,
            p.categoryId,
            p.createdAt,
            p.updatedAt,
            p.removed
        );
    }

    function _vote(uint256 proposalId, uint8 vote) private {
        Proposal storage p = proposals[proposalId];
        require(p.activeStatus, "Proposals: not active");
        require(block.timestamp < p.expiredDate, "Proposals: expired");
        require(votes[proposalId][msg.sender] == NO_VOTE, "Proposals: already voted");
        votes[proposalId][msg.sender] = vote;
        if (vote == YES) {
            p.yesVotes += 1;
        } else {
            p.noVotes += 1;
        }
        p.updatedAt = block.timestamp;
    }
}
