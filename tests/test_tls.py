"""TLS done by C on the I/O thread (csrc/server/tls.c): a certificate authority
made by the test, TLS 1.2 and 1.3, ALPN, a chain file, an encrypted key,
session resumption across workers, mutual TLS, hostile handshakes, bad
certificate options, and every kind of response over https, checked with
Python's ssl, requests, curl, openssl s_client and BentoML's own client."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import requests

from conftest import REPO, SERVICES, free_port, wait_for

TARGET = f"{SERVICES / 'tls_svc.py'}:TlsSvc"
PASSWORD = "s3cret-pw"

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl tool")


def _openssl(cwd: Path, *args: str) -> None:
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def _ec_key(cwd: Path, name: str) -> None:
    _openssl(cwd, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name)


def _sign(cwd: Path, name: str, subject: str, ca: str, ext: str) -> None:
    """name.key -> name.pem, signed by ca.pem/ca.key, with the extensions in ext."""
    _ec_key(cwd, f"{name}.key")
    _openssl(cwd, "req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr")
    (cwd / f"{name}.ext").write_text(ext)
    _openssl(cwd, "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """root -> intermediate -> server (chain file: server + intermediate); a client
    certificate from the root; a client certificate from a CA nobody trusts."""
    d = tmp_path_factory.mktemp("pki")
    for ca in ("root", "rogue"):
        _ec_key(d, f"{ca}.key")
        _openssl(d, "req", "-x509", "-key", f"{ca}.key", "-subj", f"/CN=bentohost test {ca} CA", "-days", "2",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-out", f"{ca}.pem")
    _sign(d, "inter", "/CN=bentohost test intermediate", "root",
          "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n")
    _sign(d, "server", "/CN=localhost", "inter",
          "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (d / "chain.pem").write_text((d / "server.pem").read_text() + (d / "inter.pem").read_text())
    _openssl(d, "pkey", "-in", "server.key", "-aes256", "-passout", f"pass:{PASSWORD}", "-out", "server-enc.key")
    _sign(d, "client", "/CN=good client", "root", "extendedKeyUsage=clientAuth\n")
    _sign(d, "badclient", "/CN=rogue client", "rogue", "extendedKeyUsage=clientAuth\n")
    _sign(d, "other", "/CN=localhost", "root", "subjectAltName=DNS:localhost\n")  # a key that is not server.key
    return d


def tls_args(pki: Path, *extra: str) -> list[str]:
    return ["--ssl-certfile", str(pki / "chain.pem"), "--ssl-keyfile", str(pki / "server.key"), *extra]


@pytest.fixture(scope="module")
def https(module_server_factory, pki):
    srv = module_server_factory(TARGET, *tls_args(pki), wait_ready=False)
    wait_https_ready(srv, pki)
    return srv


def client_ctx(pki: Path, **kw) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "root.pem"))
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def url(srv) -> str:
    return f"https://127.0.0.1:{srv.port}"


def wait_https_ready(srv, pki: Path, timeout: float = 60.0) -> None:
    def ready():
        if srv.proc.poll() is not None:
            srv.fail(f"server exited with {srv.proc.returncode}")
        return requests.get(url(srv) + "/readyz", verify=str(pki / "root.pem"), timeout=2).status_code == 200

    wait_for(ready, timeout=timeout, what="/readyz over https")


def read_response(s) -> tuple[bytes, bytes]:
    """(head, body) of one Content-Length response read from socket s."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, body
        body += chunk
    return head, body


def test_json_over_https_with_keep_alive(https, pki):
    conn = http.client.HTTPSConnection("127.0.0.1", https.port, context=client_ctx(pki), timeout=10)
    for i in range(5):
        conn.request("POST", "/echo", body=json.dumps({"text": f"hi {i}"}), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and r.read() == f"hi {i}".encode()
    assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
    conn.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_versions_and_alpn(https, pki, version):
    ctx = client_ctx(pki, minimum_version=version, maximum_version=version)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection(("127.0.0.1", https.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() == version.name.replace("_", ".").replace("TLSv1.", "TLSv1.")
            assert s.selected_alpn_protocol() == "http/1.1"
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")


def test_pipelined_requests_over_tls(https, pki):
    with socket.create_connection(("127.0.0.1", https.port), timeout=10) as raw:
        with client_ctx(pki).wrap_socket(raw, server_hostname="localhost") as s:
            body = b'{"text":"p"}'
            one = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
            s.sendall(one * 3)
            got = b""
            while got.count(b"HTTP/1.1 200") < 3:
                data = s.recv(65536)
                assert data, got
                got += data


def test_stream_upload_metrics_and_page_over_https(https, pki):
    ca = str(pki / "root.pem")
    r = requests.post(url(https) + "/ticks", json={"n": 3}, verify=ca, stream=True, timeout=10)
    assert r.status_code == 200 and b"".join(r.iter_content(None)) == b"tick 0\ntick 1\ntick 2\n"
    blob = os.urandom(3 << 20)
    r = requests.post(url(https) + "/upload", files={"f": ("x.bin", blob)}, verify=ca, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["size"] == len(blob)
    assert "bentoml_service_request_total" in requests.get(url(https) + "/metrics", verify=ca, timeout=10).text
    assert requests.get(url(https) + "/", verify=ca, timeout=10).status_code == 200


def test_sessions_resume_on_every_worker(https, pki):
    ctx = client_ctx(pki)
    with socket.create_connection(("127.0.0.1", https.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(4096)  # the ticket arrives with or before the answer
            session = s.session
    assert session is not None
    pids, reused = set(), []

    def resume_once(_):
        with socket.create_connection(("127.0.0.1", https.port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
                s.sendall(b"POST /whoami HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
                return s.session_reused, json.loads(read_response(s)[1])["pid"]

    from concurrent.futures import ThreadPoolExecutor

    deadline = time.monotonic() + 30
    with ThreadPoolExecutor(8) as ex:  # concurrent connections reach both workers
        while len(pids) < 2 and time.monotonic() < deadline:
            for was_reused, pid in ex.map(resume_once, range(16)):
                reused.append(was_reused)
                pids.add(pid)
    assert all(reused), reused
    assert len(pids) == 2, f"resumed sessions should reach both workers: {pids}"


def test_curl_and_openssl_s_client(https, pki):
    if shutil.which("curl"):
        r = subprocess.run(["curl", "-sS", "--cacert", str(pki / "root.pem"), "-X", "POST", "-H",
                            "Content-Type: application/json", "-d", '{"text":"curl"}', url(https) + "/echo"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and r.stdout == "curl", r.stderr
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{https.port}", "-CAfile",
                        str(pki / "root.pem"), "-verify_return_error", "-alpn", "http/1.1", "-ign_eof"],
                       input="GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       capture_output=True, text=True, timeout=30)
    assert "Verify return code: 0 (ok)" in r.stdout, r.stdout + r.stderr
    assert "ALPN protocol: http/1.1" in r.stdout
    assert "HTTP/1.1 200" in r.stdout


def _rejected_tls(srv, pki) -> float:
    text = requests.get(url(srv) + "/metrics", verify=str(pki / "root.pem"), timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("bentohost_requests_rejected_total") and 'reason="tls_handshake"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize("attack", ["plain_http", "garbage", "truncated", "silent"])
def test_hostile_handshakes_close_only_their_connection(https, pki, attack):
    before = _rejected_tls(https, pki)
    s = socket.create_connection(("127.0.0.1", https.port), timeout=10)
    if attack == "plain_http":
        s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    elif attack == "garbage":
        s.sendall(os.urandom(4096))
    elif attack == "truncated":
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(40))
        s.shutdown(socket.SHUT_WR)
    if attack != "silent":
        s.settimeout(10)
        try:
            while s.recv(4096):  # an alert at most, then the close
                pass
        except ConnectionResetError:
            pass
    s.close()
    if attack in ("plain_http", "garbage"):
        wait_for(lambda: _rejected_tls(https, pki) > before, timeout=10, what="the refused handshake counted")
    assert requests.post(url(https) + "/echo", json={"text": "still"}, verify=str(pki / "root.pem"),
                         timeout=10).text == "still"


@pytest.fixture(scope="module")
def mtls(module_server_factory, pki):
    srv = module_server_factory(TARGET, *tls_args(pki, "--ssl-cert-reqs", "2", "--ssl-ca-certs",
                                                  str(pki / "root.pem")), wait_ready=False)
    wait_for(lambda: srv.log().count("ready") >= 1 or srv.proc.poll() is not None, timeout=60, what="start")
    return srv


def _mtls_get(srv, pki, cert: str | None):
    ctx = client_ctx(pki)
    if cert:
        ctx.load_cert_chain(str(pki / f"{cert}.pem"), str(pki / f"{cert}.key"))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            return s.recv(4096)


def test_mutual_tls(mtls, pki):
    wait_for(lambda: _mtls_get(mtls, pki, "client").startswith(b"HTTP/1.1 200"), timeout=60, what="mTLS ready")
    for cert in (None, "badclient"):
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            data = _mtls_get(mtls, pki, cert)
            if not data:  # TLS 1.3: the refusal can arrive as the first read
                raise ConnectionResetError("closed")
    assert _mtls_get(mtls, pki, "client").startswith(b"HTTP/1.1 200")


def test_optional_client_certificate(server_factory, pki):
    srv = server_factory(TARGET, *tls_args(pki, "--ssl-cert-reqs", "1", "--ssl-ca-certs", str(pki / "root.pem")),
                         "--workers", "1", wait_ready=False)
    wait_https_ready(srv, pki)
    assert _mtls_get(srv, pki, None).startswith(b"HTTP/1.1 200")
    assert _mtls_get(srv, pki, "client").startswith(b"HTTP/1.1 200")


def test_encrypted_key_with_its_password(server_factory, pki):
    srv = server_factory(TARGET, "--ssl-certfile", str(pki / "chain.pem"), "--ssl-keyfile", str(pki / "server-enc.key"),
                         "--ssl-keyfile-password", PASSWORD, "--workers", "1", wait_ready=False)
    wait_https_ready(srv, pki)


@pytest.mark.parametrize("args,reason", [
    (["--ssl-certfile", "/nonexistent/cert.pem"], "cannot read certificate /nonexistent/cert.pem"),
    (["--ssl-certfile", "{d}/chain.pem", "--ssl-keyfile", "{d}/other.key"], "does not match the certificate"),
    (["--ssl-certfile", "{d}/chain.pem", "--ssl-keyfile", "{d}/server-enc.key", "--ssl-keyfile-password", "wrong"],
     "wrong --ssl-keyfile-password"),
    (["--ssl-certfile", "{d}/chain.pem", "--ssl-keyfile", "{d}/server-enc.key"], "give --ssl-keyfile-password"),
    (["--ssl-certfile", "{d}/root.key"], "bad certificate file"),
    (["--ssl-certfile", "{d}/chain.pem", "--ssl-keyfile", "{d}/server.key", "--ssl-cert-reqs", "2"],
     "needs --ssl-ca-certs"),
    (["--ssl-certfile", "{d}/chain.pem", "--ssl-keyfile", "{d}/server.key", "--ssl-version", "3"],
     "TLS 1.0 and 1.1 are insecure"),
])
def test_bad_tls_options_stop_the_server_before_any_worker(server_factory, pki, args, reason):
    args = [a.replace("{d}", str(pki)) for a in args]
    srv = server_factory(TARGET, *args, start=False)
    srv.start(wait_ready=False)
    code = srv.wait_exit(30)
    log = srv.log()
    assert code != 0
    assert reason in log, log
    assert "loading" not in log, "no worker may start: " + log
    assert len([l for l in log.splitlines() if "error" in l.lower()]) <= 2, log


def _served_serial(port: int, pki: Path) -> int:
    ctx = client_ctx(pki)
    ctx.check_hostname = False  # "other" is for DNS:localhost only
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return int(s.getpeercert()["serialNumber"], 16)


def test_sighup_loads_renewed_certificate_files(server_factory, pki, tmp_path):
    """A renewed certificate (as certbot writes it) is served after SIGHUP: the rolling
    restart's new workers read the files again; requests keep working throughout."""
    import signal

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(pki / "chain.pem", cert)
    shutil.copy(pki / "server.key", key)
    srv = server_factory(TARGET, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), wait_ready=False)
    wait_https_ready(srv, pki)
    first = _served_serial(srv.port, pki)
    shutil.copy(pki / "other.pem", cert)
    shutil.copy(pki / "other.key", key)
    srv.signal(signal.SIGHUP)
    wait_for(lambda: _served_serial(srv.port, pki) != first, timeout=60, what="the renewed certificate")
    renewed = f"https://localhost:{srv.port}/echo"  # the new certificate names localhost only
    assert requests.post(renewed, json={"text": "renewed"}, verify=str(pki / "root.pem"), timeout=10).text == "renewed"


CALLS = str(SERVICES / "graph_calls.py")


def test_a_dependency_reached_by_https(server_factory, pki):
    """--depends Model=https://...: the caller's C client speaks TLS, verifies the
    certificate for the URL's host name (CA from SSL_CERT_FILE), and the JSON calls,
    sync and async, go through; an untrusted certificate is a 503 with the reason logged."""
    model_port = free_port()
    model = server_factory(f"{CALLS}:Front", "--service", "Model", *tls_args(pki), port=model_port,
                           wait_ready=False)
    wait_https_ready(model, pki)
    env = {**os.environ, "SSL_CERT_FILE": str(pki / "root.pem")}
    middle = server_factory(f"{CALLS}:Front", "--service", "Middle", "--depends",
                            f"Model=https://localhost:{model_port}", env=env)
    for path, want in (("/predict", 7.0), ("/apredict", 13.0)):
        r = requests.post(middle.url + path, json={"x": [1, 2, 3]}, timeout=20)
        assert r.status_code == 200, r.text + middle.log()
        assert r.json() == want

    untrusting = server_factory(f"{CALLS}:Front", "--service", "Middle", "--depends",
                                f"Model=https://localhost:{model_port}")
    r = requests.post(untrusting.url + "/predict", json={"x": [1]}, timeout=20)
    assert r.status_code == 503, r.text
    wait_for(lambda: "TLS to localhost failed" in untrusting.log(), timeout=10, what="the logged reason")
    assert "certificate" in untrusting.log()


def test_real_bentoml_client_over_https(bentoml_python, https, pki, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(
        "import sys, bentoml\n"
        "with bentoml.SyncHTTPClient(sys.argv[1]) as c:\n"
        "    print(c.echo(text='over tls'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SSL_CERT_FILE=str(pki / "root.pem"), BENTOML_HOME=str(tmp_path / "home"), BENTOML_DO_NOT_TRACK="True")
    r = subprocess.run([str(bentoml_python), str(script), f"https://localhost:{https.port}"], capture_output=True,
                       text=True, timeout=180, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == "over tls"


from test_bentoml_clients import bentoml_python  # noqa: E402,F401  (the session fixture)
