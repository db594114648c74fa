"""The Kafka runtime: the same decisions as the embedded runtime, on a real cluster."""
