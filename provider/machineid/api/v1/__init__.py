"""Generated protobuf and gRPC stubs (scripts/gen); never edit by hand."""
