"""Routing: states, pure decision rules, and the responses (SRE, ERRT, ...) sent back to submitters.

The pure parts (:mod:`.rules`, :mod:`.responses`) never import Twisted; the pipeline that drives
transactions through their states is the Twisted boundary.
"""
