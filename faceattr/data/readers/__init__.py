"""Readers of each dataset's official label files into FaceRecords."""
