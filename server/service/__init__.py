"""Service: the gRPC JobService, its interceptors and the wiring that starts it all. The top layer."""
