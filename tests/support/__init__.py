"""What the test layers share that is not a fixture: settings isolation, child processes, the
sandbox, the model server, the API fleet, job submission, webhook deliveries."""
