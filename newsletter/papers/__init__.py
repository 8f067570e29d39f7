"""Papers: the topic catalogue, sources, ingest and fetch, and their embeddings."""
