"""Narrow adapters for the outside world (Kubernetes now; Prometheus and Triton later). I/O only."""
