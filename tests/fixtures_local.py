"""Fixtures for the local AWS Batch emulator (gahp.local)."""
