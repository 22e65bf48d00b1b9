"""Moved to :mod:`faceattr.inference.detect`; this re-export keeps old scripts working for one release."""

from faceattr.inference.detect import *  # noqa: F401,F403
