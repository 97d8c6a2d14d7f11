"""Preprocessing recipes: declarative, JSON-serialisable lists of steps, replayable and invertible."""
