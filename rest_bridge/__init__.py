"""The REST bridge: the JSON endpoints of ASYNC-BLOCKCHAIN-SYNC.md, served by calling the gRPC JobService."""
