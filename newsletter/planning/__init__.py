"""Planning an edition: the model, subscribers' profile vectors, ranking into the outbox."""
