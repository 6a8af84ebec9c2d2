"""NGI-style SOAP: the envelope, the services' contract, the intake server and the senders.

- :mod:`.envelope`: SOAP 1.1/1.2 envelopes (hardened parsing, building, faults read back) and
  the WS-Addressing header blocks a request may carry; no Twisted;
- :mod:`.contract`: the NGI services (WSDL, compiled schema, served documents with the control
  number pattern corrected) and the faults they answer;
- :mod:`.server`: the ``soap`` listener (twisted.web), ``submitRequest`` to the intake;
- :mod:`.sender`: ``receiveResponse`` pushes of responses to an agency (Twisted);
- :mod:`.client`: a small blocking ``submitRequest`` client (the ``replay`` command); no Twisted.

The control numbers' table is in :mod:`gateway.store.controls`.

Intake (the ``soap`` listener, :func:`.server.soap_root`)::

    /ngi/NativeEBTSService    submitRequest(ngi-core:NativeEBTSMessage: base64 traditional EBTS)
    /ngi/NGIUserService       submitRequest(itl:NISTBiometricInformationExchangePackage)
    ...?wsdl                  the service's WSDL, soap:address = [soap] public_url + path, else
                              the listener's own address (never the request's Host header)
    ...?xsd=PATH              the XSDs the WSDL imports (PATH relative to the bundle's xsd/)

Delivery: :func:`.sender.soap_sender`.  Nothing is imported here, so that the envelope and the
client load without Twisted.
"""
