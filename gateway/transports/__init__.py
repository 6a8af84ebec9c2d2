"""Transports: thin Twisted adapters (SMTP, SOAP, HTTP) around the journal and the pipeline."""
