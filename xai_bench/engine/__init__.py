"""The evaluation engine: run context, seeded batches, method jobs, resumable chunks, and the
template every evaluation benchmark fills in."""
