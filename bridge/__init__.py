"""The Tailgate bridge: republishes Kafka topics onto Redis through the wire publish step."""
