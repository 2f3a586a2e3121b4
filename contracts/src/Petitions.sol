// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {IAuthRegistry} from "./IAuthRegistry.sol";

/// @title Petitions
/// @notice Authorized users create and sign petitions, once per signer. The
/// signature that reaches `signaturesRequired` completes the petition. The
/// creator or an admin may remove a petition.
contract Petitions {
    event PetitionCreated(
        uint256 indexed petitionId, address indexed creator, string titleCid, string desCid, uint256 signaturesRequired
    );
    event PetitionSigned(uint256 indexed petitionId, address indexed signer);
    event PetitionCompleted(uint256 indexed petitionId);
    event PetitionRemoved(uint256 indexed petitionId, address indexed remover);

    struct Petition {
        string titleCid;
        string desCid;
        uint256 signaturesRequired;
        uint256 signaturesCount;
        address creator;
        bool completed;
        bool removed;
    }

    IAuthRegistry private immutable auth;
    uint256 public petitionCount;
    mapping(uint256 => Petition) private petitions;
    mapping(uint256 => mapping(address => bool)) private signed;

    constructor(address authRegistry) {
        auth = IAuthRegistry(authRegistry);
    }

    modifier onlyAuthorized() {
        require(auth.isAuthorized(msg.sender), "Petitions: not authorized");
        _;
    }

    modifier exists(uint256 petitionId) {
        require(petitionId >= 1 && petitionId <= petitionCount, "Petitions: no such petition");
        _;
    }

    function createPetition(string calldata titleCid, string calldata desCid, uint256 signaturesRequired)
        external
        onlyAuthorized
        returns (uint256)
    {
        require(bytes(titleCid).length > 0, "Petitions: empty title");
        require(signaturesRequired > 0, "Petitions: zero signatures required");
        uint256 id = ++petitionCount;
        Petition storage p = petitions[id];
        p.titleCid = titleCid;
        p.desCid = desCid;
        p.signaturesRequired = signaturesRequired;
        p.creator = msg.sender;
        emit PetitionCreated(id, msg.sender, titleCid, desCid, signaturesRequired);
        return id;
    }

    function signPetition(uint256 petitionId) external onlyAuthorized exists(petitionId) {
        Petition storage p = petitions[petitionId];
        require(!p.removed, "Petitions: removed");
        require(!p.completed, "Petitions: completed");
        require(!signed[petitionId][msg.sender], "Petitions: already signed");
        signed[petitionId][msg.sender] = true;
        p.signaturesCount += 1;
        emit PetitionSigned(petitionId, msg.sender);
        if (p.signaturesCount >= p.signaturesRequired) {
            p.completed = true;
            emit PetitionCompleted(petitionId);
        }
    }

    function removePetition(uint256 petitionId) external exists(petitionId) {
        Petition storage p = petitions[petitionId];
        require(!p.removed, "Petitions: removed");
        require(msg.sender == p.creator || auth.isAdmin(msg.sender), "Petitions: not creator or admin");
        p.removed = true;
        emit PetitionRemoved(petitionId, msg.sender);
    }

    function getPetition(uint256 petitionId)
        external
        view
        exists(petitionId)
        returns (
            string memory titleCid,
            string memory desCid,
            uint256 signaturesRequired,
            uint256 signaturesCount,
            address creator,
            bool completed,
            bool removed
        )
    {
        Petition storage p = petitions[petitionId];
        return (p.titleCid, p.desCid, p.signaturesRequired, p.signaturesCount, p.creator, p.completed, p.removed);
    }

    function hasSigned(uint256 petitionId, address signer) external view returns (bool) {
        return signed[petitionId][signer];
    }
}
