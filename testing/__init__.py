"""Test harness for lagmon, used from the repo root (not installed): by tests/, bench/ and by hand.

testing.broker   a real single-node Apache Kafka broker (KRaft): the Broker class
testing.fetch    the broker jars from Maven Central and the Java prerequisite; Failure
testing.probe    is a broker answering, is its group coordinator loaded (any broker, ours or not)
testing.traffic  Kafka traffic (producers, lagging consumers) and the true lag to judge lagmon by
testing.stages   lagmon stages as real OS processes and the config file they read
"""
