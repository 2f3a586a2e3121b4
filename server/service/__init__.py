"""Service: the gRPC JobService, what every call goes through and the wiring that starts it all. The top layer."""
