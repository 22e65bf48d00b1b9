"""Generated data for tests and the demo: drawn faces and dataset fixtures in official layouts."""
