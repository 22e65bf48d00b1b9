"""Folders of photos to training data: alignment of whole folders."""
