"""Generated stubs of the versioned `ion.v1` protobuf package."""
