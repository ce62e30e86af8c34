"""Everything that talks to Kafka or encodes for it: the only package importing confluent-kafka.

``serde`` (event encodings, the only importer of fastavro), ``producer`` (transactions),
``admin`` (topics), ``state_topic`` and ``reader`` (consuming).
"""
