"""neuralworld: turn a recording of a place into a playable neural world."""

__version__ = "0.1.0"
