"""Interoperability with DHS (IDENT) and the ICE LESC: the rules, the Nlets text and the records.

- :mod:`.offenses`: NCIC offense codes and their DHS notification priority levels (the table as
  data in ``data/``), the priority of a criminal history;
- :mod:`.iaq`: the Immigration Alien Query to the LESC, its response (IAR), the SRE's DHS lines;
- :mod:`.subjects`: the biographic records kept beside the FBI and DHS galleries.

Pure: no I/O but the subject store's own file, no Twisted.
"""
