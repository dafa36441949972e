"""gRPC plumbing shared by every service: server bootstrap, authentication, error mapping, interceptors."""
