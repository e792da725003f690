"""Private runtime of fastflow: the plan, its nodes, the worker loop and running a flow.

It imports the store (``fastflow._store``) to record and resume, never the store tools or
the public modules above it; ``distributed/`` runs the same workers in several processes.
"""
