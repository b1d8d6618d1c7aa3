"""Tool catalog, downstream adapters and the local sandbox."""
