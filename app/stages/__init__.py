"""The pipeline: the runner (the stage harness), plan, verify_proposal, execute,
verify_outcome, the soft check and the reaper that keeps parked jobs moving."""
