"""The hash-chained audit trail: the chain, checkpoints, verification and the
story of a job."""
