"""Several processes for one run: the coordinator, forked processes, Ray actors, the wire."""
