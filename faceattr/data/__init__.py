"""Dataset readers, generated fixtures and the input pipeline, from label files to batches."""
