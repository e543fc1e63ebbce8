"""Fixtures for running awsbatch_gahp under the gridmanager emulator."""
