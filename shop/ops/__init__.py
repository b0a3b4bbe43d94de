"""Operations: liveness and readiness probes, Prometheus metrics, worker health."""
