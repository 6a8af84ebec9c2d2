"""Template-level synthetic fingerprints: moved to :mod:`gateway.synth.templates` (issue 18:
test data lives beside the image-level generator); this name stays for older imports."""

from gateway.synth.templates import *  # noqa: F403
