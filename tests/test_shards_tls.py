"""The Dask channel of the gallery shards is mutual TLS (issue 18: no channel without
authentication): certificates from the gateway's PKI (a CA of the cluster only), a LocalCluster
of 2 workers on loopback with TLS searched through the gateway's sharded search, refusals of a
peer without a certificate or with one of another CA over real sockets, and the checks of the
``[matcher]`` keys."""

from __future__ import annotations

import io
import socket
import ssl
from contextlib import redirect_stderr, redirect_stdout

import distributed  # the test extra: CI runs these on a LocalCluster
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway import pki
from gateway.cli import main
from gateway.config import ConfigError, parse_config
from gateway.matcher import shards, synthetic
from gateway.matcher.gallery import Gallery
from gateway.matcher.shards import ShardedGallery

SEED = 9
SUBJECTS = 40
PROBES = [(SEED, 3, 2), (SEED, 27, 1), (62, 0, 1)]  # two mated, one not


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def _probe(i, impression=1, seed=SEED):
    return synthetic.tenprint(synthetic.identity(seed, i), impression)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A data directory with the cluster's certificates made by the CLI, an agency identity of
    the gateway's own CA, and a calibrated synthetic gallery split in 3 shards."""
    root = tmp_path_factory.mktemp("dask-tls")
    for name in ("scheduler", "worker", "gateway"):
        rc, out, err = _cli("pki", "issue", name, "--role", "dask", "--data-dir", root)
        assert rc == 0, err
        assert f"dask/{name}.crt" in out
    rc, _, err = _cli("pki", "issue", "WVIAFIS0Z", "--data-dir", root)  # an agency
    assert rc == 0, err
    g = Gallery()
    synthetic.populate(g, SUBJECTS, seed=SEED)
    g.calibrate([g.search(_probe(i, 1, 60))[0].score for i in range(10)], fpir=0.01)
    g.save(root / "gallery")
    shards.split(root / "gallery", root / "gallery.shards", 3)
    return root


def _member(data, name):
    return pki.dask_paths(data / "pki", name)  # (ca, cert, key)


@pytest.fixture(scope="module")
def tls_cluster(data):
    """2 workers (in this process, talking TLS over 127.0.0.1) and a scheduler that require
    encryption and a certificate of the cluster's CA from every peer."""
    ca, s_cert, s_key = _member(data, "scheduler")
    _, w_cert, w_key = _member(data, "worker")
    _, c_cert, c_key = _member(data, "gateway")
    security = distributed.Security(
        tls_ca_file=str(ca),
        tls_scheduler_cert=str(s_cert),
        tls_scheduler_key=str(s_key),
        tls_worker_cert=str(w_cert),
        tls_worker_key=str(w_key),
        tls_client_cert=str(c_cert),
        tls_client_key=str(c_key),
        require_encryption=True,
    )
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=False,
        protocol="tls://",
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address="127.0.0.1:0",
        security=security,
    ) as cluster:
        yield cluster


def test_dask_certificates_come_from_a_cluster_ca_of_their_own(data):
    ca, cert, key = _member(data, "worker")
    assert ca.parent == data / "pki" / "dask" and oct(key.stat().st_mode & 0o777) == "0o600"
    dask_ca = x509.load_pem_x509_certificate(ca.read_bytes())
    main_ca = x509.load_pem_x509_certificate((data / "pki" / "ca.crt").read_bytes())
    member = x509.load_pem_x509_certificate(cert.read_bytes())
    assert member.issuer == dask_ca.subject != main_ca.subject
    member.verify_directly_issued_by(dask_ca)
    with pytest.raises((ValueError, Exception)):
        member.verify_directly_issued_by(main_ca)
    eku = member.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    # workers and the scheduler both listen and connect
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    # --hostname goes into the subject alternative names; loopback always
    rc, _, err = _cli(
        "pki", "issue", "worker-2", "--role", "dask", "--data-dir", data, "--hostname", "10.1.2.4"
    )
    assert rc == 0, err
    _, cert2, _ = _member(data, "worker-2")
    san = x509.load_pem_x509_certificate(cert2.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "10.1.2.4" in {str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)}
    rc, _, err = _cli("pki", "issue", "../x", "--role", "dask", "--data-dir", data)
    assert rc == 2 and "not a usable identity name" in err
    rc, _, err = _cli("pki", "issue", "--role", "dask", "--data-dir", data)
    assert rc == 2 and "name the Dask member" in err


def test_tls_shards_equal_the_unsharded_search(data, tls_cluster):
    address = tls_cluster.scheduler_address
    assert address.startswith("tls://127.0.0.1:")
    plain = Gallery.load(data / "gallery")
    sharded = ShardedGallery(
        data / "gallery.shards", scheduler=address, tls=_member(data, "gateway")
    )
    try:
        hits = 0
        for seed, i, imp in PROBES:
            probe = _probe(i, imp, seed)
            a = [c.to_dict() for c in sharded.search(probe)]
            assert a == [c.to_dict() for c in plain.search(probe)]
            hits += a[0]["decision"]
            small = {"refine": 20, "shortlist": 6, "top": 4}
            a = [c.to_dict() for c in sharded.search(probe, **small)]
            assert a == [c.to_dict() for c in plain.search(probe, **small)]
        assert hits == 2
        # the shards went over the TLS channel to both workers
        assert len(set(sharded.backend.placement.values())) == 2
        assert all(w.startswith("tls://") for w in sharded.backend.placement.values())
    finally:
        sharded.close()


def _handshake(address: str, cafile, cert=None, key=None) -> ssl.SSLSocket:
    """A TLS connection to the scheduler at ``address`` (one read, to let a TLS 1.3 server
    send its verdict on our certificate); the caller closes it."""
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False  # Dask names no host; the CA is the cluster's own
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key))
    raw = socket.create_connection((host, int(port)), timeout=5)
    tls = ctx.wrap_socket(raw)
    tls.settimeout(1.0)
    try:
        tls.recv(1)  # Dask's server speaks only when spoken to: a timeout means "accepted"
    except TimeoutError:
        pass
    return tls


def test_peers_without_a_cluster_certificate_are_refused(data, tls_cluster):
    address = tls_cluster.scheduler_address
    ca, cert, key = _member(data, "gateway")
    # the gateway's own certificate: the handshake holds and the server waits for Dask messages
    _handshake(address, ca, cert, key).close()
    # no certificate at all
    with pytest.raises(ssl.SSLError, match="(?i)certificate"):
        _handshake(address, ca).close()
    # an agency's certificate of the gateway's main CA does not open the cluster
    agency = data / "pki" / "agencies"
    with pytest.raises(ssl.SSLError, match="(?i)unknown ca|certificate"):
        _handshake(address, ca, agency / "WVIAFIS0Z.crt", agency / "WVIAFIS0Z.key").close()
    # clear-text Dask to the TLS scheduler: refused (the client gives up at its timeout)
    plain = address.replace("tls://", "tcp://")
    with pytest.raises(OSError):
        distributed.Client(plain, timeout=2, set_as_default=False)


def test_the_gateway_refuses_an_unauthenticated_channel(data):
    root = data / "gallery.shards"
    gw = _member(data, "gateway")
    with pytest.raises(ValueError, match="only on loopback"):
        ShardedGallery(root, scheduler="tcp://10.1.2.3:8786")
    with pytest.raises(ValueError, match="CA, certificate and key"):
        ShardedGallery(root, scheduler="tls://10.1.2.3:8786")
    with pytest.raises(ValueError, match="tls:// or tcp://"):
        ShardedGallery(root, scheduler="ws://10.1.2.3:8786", tls=gw)
    assert shards.security("tcp://127.0.0.1:8786") is None
    assert shards.security("tcp://[::1]:8786") is None
    sec = shards.security("tls://10.1.2.3:8786", gw)
    assert sec.require_encryption and sec.tls_client_cert == str(gw[1])


def test_scheduler_keys_are_checked(data, tmp_path):
    dask = data / "pki" / "dask"
    base = {"data_dir": str(data)}
    # tls:// with the default files of DATA/pki/dask
    cfg = parse_config({**base, "matcher": {"scheduler": "tls://10.1.2.3:8786"}})
    assert cfg.scheduler == "tls://10.1.2.3:8786"
    assert cfg.scheduler_tls.files() == tuple(
        str(dask / n) for n in ("ca.crt", "gateway.crt", "gateway.key")
    )
    # named files
    matcher = {
        "scheduler": "tls://dask.example.org:8786",
        "scheduler_ca": str(dask / "ca.crt"),
        "scheduler_cert": str(dask / "worker.crt"),
        "scheduler_key": str(dask / "worker.key"),
    }
    cfg = parse_config({**base, "matcher": matcher})
    assert cfg.scheduler_tls.cert == dask / "worker.crt"
    # tcp:// on loopback only, and no TLS files then
    cfg = parse_config({**base, "matcher": {"scheduler": "tcp://127.0.0.1:8786"}})
    assert cfg.scheduler_tls is None
    refusals = [
        ({"scheduler": "tcp://10.1.2.3:8786"}, "matcher.scheduler", "only on loopback"),
        ({"scheduler": "tcp://dask.example.org:8786"}, "matcher.scheduler", "tls://"),
        ({"scheduler": "http://10.1.2.3:8786"}, "matcher.scheduler", "tls://HOST:PORT"),
        ({**matcher, "scheduler_cert": str(tmp_path / "none.crt")}, "matcher.scheduler_cert", ""),
        (
            {"scheduler": "tcp://127.0.0.1:8786", "scheduler_ca": str(dask / "ca.crt")},
            "matcher.scheduler_ca",
            "tls://",
        ),
    ]
    for table, key, text in refusals:
        with pytest.raises(ConfigError) as info:
            parse_config({**base, "matcher": table})
        assert info.value.key == key and text in str(info.value), (table, str(info.value))
    # no certificate issued yet under the data directory: named, with how to make it
    with pytest.raises(ConfigError) as info:
        parse_config({"data_dir": str(tmp_path), "matcher": {"scheduler": "tls://h:8786"}})
    assert info.value.key == "matcher.scheduler_ca"
    assert "pki issue gateway --role dask" in str(info.value)
