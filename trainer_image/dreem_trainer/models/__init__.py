"""The global tracking transformer: visual encoder, embeddings, transformer and association head."""
