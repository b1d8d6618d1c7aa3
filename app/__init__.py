"""opsgate's domain: settings, state, the pipeline stages and the controls around them."""
