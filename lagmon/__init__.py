"""lagmon: Kafka consumer-group lag in seconds, by head-offset interpolation."""

__version__ = "0.1.0"
