"""Private runtime of fastflow: plan flattening, the worker loop and the recovery store."""
