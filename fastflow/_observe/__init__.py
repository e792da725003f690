"""Observing a run: metrics, the dataflow API, logging and tracing (docs/observability.md)."""
