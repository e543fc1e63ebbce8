"""Shared pytest fixtures. Each area keeps its fixtures in its own module, imported here."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from fixtures_local import *  # noqa: E402,F401,F403  (local AWS Batch emulator fixtures)
from fixtures_gahp import *  # noqa: E402,F401,F403  (GAHP process / gridmanager emulator fixtures)
