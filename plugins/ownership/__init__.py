"""Unauthorized model ownership (S3): model extraction attacks, ownership defenses and their metrics."""
