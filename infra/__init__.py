"""Deployment files. Only ``clickhouse/`` (DDL migrations and example queries) ships in the wheel, as package data,
so ``camcount provision`` finds it wherever camcount is installed; Prometheus, Grafana and Kubernetes files are
used from the repository."""
