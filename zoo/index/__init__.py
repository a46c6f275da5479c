"""The index layer: manifests (frozen entries, parse + validate), label sets, name resolution."""
