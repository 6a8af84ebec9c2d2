"""The answers sent back to a submitter, built from a submission and what processing found.

- :mod:`.errt`: the ERRT (Tenprint Transaction Error) from findings, and the response header
  (Type-1 addressing, echoed Type-2 fields) every answer shares;
- :mod:`.sre`: the SRE (Submission Results - Electronic) from the search results.

Pure: no I/O, no Twisted.
"""
