"""Routing: the pipeline driving transactions through their states, and what it decides.

- :mod:`.pipeline`, :mod:`.outbound`: the Twisted side (the journal's work queue, deliveries);
- :mod:`.processing`: one transaction in a worker process, as explicit steps;
- :mod:`.rules`, :mod:`.authz`: pure decisions (which TOT is answered, searched, enrolled...);
- :mod:`.interop`: DHS / LESC interoperability (offense levels, IAQ/IAR Nlets text, subjects);
- :mod:`.answers`: the responses (ERRT, SRE).

Everything but the pipeline and outbound is pure and never imports Twisted.
"""
