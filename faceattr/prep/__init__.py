"""Folders of photos to training data: alignment of whole folders, and cleaning them before labelling."""
