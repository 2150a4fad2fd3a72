"""Captures: a recording of a place (frames + per-frame motion) in one folder."""

from neuralworld.capture.format import Capture, CaptureWriter, open_capture

__all__ = ["Capture", "CaptureWriter", "open_capture"]
