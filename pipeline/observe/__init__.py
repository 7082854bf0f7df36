"""Seeing what workers do: Prometheus metrics, the health endpoint, heartbeats, JSON logs."""
