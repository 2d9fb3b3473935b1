"""Reliability tests: hostile input, bad files and load."""
