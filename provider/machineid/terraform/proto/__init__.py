"""Generated protobuf and gRPC stubs of the Terraform/OpenTofu plugin protocol (scripts/gen); never edit by hand."""
