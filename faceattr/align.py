"""Moved to :mod:`faceattr.inference.align`; this re-export keeps old scripts working for one release."""

from faceattr.inference.align import *  # noqa: F401,F403
