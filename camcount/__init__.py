"""camcount: shared plumbing (settings, CLI, Kafka client config, logging, metrics, local stack)."""

__version__ = "0.1.0"
