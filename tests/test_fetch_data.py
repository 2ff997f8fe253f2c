"""fetch_data.sh against a local HTTPS server on 127.0.0.1 (self-signed certificate trusted through CURL_CA_BUNDLE).

The server mimics download.is.tue.mpg.de: POST username/password (form-encoded) to
``download.php?domain=interactvlm&sfile=<file>``. The URL path selects a behaviour: ``/ok/`` (401 on wrong
credentials, honours Range), ``/slow/`` (body trickles out over ~2 s), ``/norange/`` (ignores Range), ``/drop/`` (drops the
connection half-way through the first response) and ``/html/``
(answers a wrong password with a 200 HTML login page, as some servers do). The server thread is a daemon, is shut
down by the fixture and by a watchdog timer, so it never outlives the test session.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import pty
import select
import signal
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import pytest
from tests.archives import targz_bytes, zip_bytes
from utils.paths import REPO_ROOT

REPO = REPO_ROOT
SCRIPT = REPO / "fetch_data.sh"
USER = "tester+1@example.org"
PASSWORD = "p@ss w&rd=%+\u00e4\"'$(touch x)`id`"  # shell metacharacters, reserved URL characters and UTF-8

pytestmark = pytest.mark.skipif(shutil.which("curl") is None or shutil.which("unzip") is None,
                                reason="fetch_data.sh needs curl and unzip")


# ---------------------------------------------------------------------------------------------------------------------
# Fixture archives





BIG = os.urandom(96 * 1024)  # incompressible payload so that partial downloads and slow transfers are meaningful

ARCHIVES = {
    # data.zip made to be unpacked in the repository root: its data/ wrapper is stripped
    "data.zip": zip_bytes({"data/hcontact_vitruvian/view_0.png": b"png0", "data/smpl_to_smplx.pkl": BIG}),
    # model archive carrying only its own folder
    "interactvlm-3d-hcontact-damon.zip": zip_bytes({"interactvlm-3d-hcontact-damon/config.json": b'{"a": 1}',
                                               "interactvlm-3d-hcontact-damon/model.bin": BIG}),
    # model archive made for the repository root: trained_models/ wrapper stripped
    "interactvlm-3d-oafford-lemon-piad.zip": zip_bytes(
        {"trained_models/interactvlm-3d-oafford-lemon-piad/config.json": b"{}"}),
    "interactvlm-2d-hcontact.zip": zip_bytes({"interactvlm-2d-hcontact/config.json": b"{}"}),
    "interactvlm-3d-hcontact-damon-fix.zip": zip_bytes({"interactvlm-3d-hcontact-damon-fix/config.json": b"{}"}),
    "damon.tar.gz": targz_bytes({"damon/train/imgname.npy": b"npy", "damon/images/x.jpg": b"jpg"},
                           symlinks={"damon/latest": "train/imgname.npy"}),
}


# ---------------------------------------------------------------------------------------------------------------------
# HTTPS server

def _make_cert(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl CLI is available")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=30)
        return cert, key
    pkey = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    crt = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(pkey.public_key())
           .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
           .not_valid_after(now + datetime.timedelta(days=2))
           .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
           .sign(pkey, hashes.SHA256()))
    cert.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return cert, key


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None, slow: bool = False):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not slow:
            self.wfile.write(body)
            return
        pieces = 10
        step = max(1, len(body) // pieces)
        for i in range(0, len(body), step):
            self.wfile.write(body[i:i + step])
            self.wfile.flush()
            time.sleep(0.2)

    def do_GET(self):
        self._send(405, b"POST only")

    def do_POST(self):
        server = self.server
        url = urllib.parse.urlsplit(self.path)
        mode = url.path.strip("/").split("/")[0]
        query = urllib.parse.parse_qs(url.query)
        sfile = query.get("sfile", [""])[0]
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8"), keep_blank_values=True)
        authed = form.get("username") == [USER] and form.get("password") == [PASSWORD]
        rng = self.headers.get("Range")
        server.log.append({"mode": mode, "sfile": sfile, "domain": query.get("domain", [""])[0], "range": rng,
                           "authed": authed})
        if not authed:
            page = b"<!DOCTYPE html><html><body><form>Login</form></body></html>"
            self._send(200 if mode == "html" else 401, page, {"Content-Type": "text/html"})
            return
        data = server.files.get(sfile)
        if data is None:
            self._send(404, b"not found")
            return
        if mode == "drop" and not rng:  # connection lost half-way: announces the full length, sends half
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if rng and mode != "norange":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return
            self._send(206, data[start:], {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}",
                                           "Content-Type": "application/octet-stream"}, slow=mode == "slow")
            return
        self._send(200, data, {"Content-Type": "application/octet-stream"}, slow=mode == "slow")


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    cert, key = _make_cert(folder, "server")
    other, _ = _make_cert(folder, "other")
    return {"cert": cert, "key": key, "other": other}


@pytest.fixture(scope="module")
def server(tls):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls["cert"], tls["key"])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.files = dict(ARCHIVES)
    httpd.log = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    watchdog = threading.Timer(300, httpd.shutdown)  # stops by itself even if the fixture is never finalised
    watchdog.daemon = True
    watchdog.start()
    try:
        yield httpd
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _url(httpd, mode: str = "ok") -> str:
    port = httpd.server_address[1]
    return f"https://127.0.0.1:{port}/{mode}/download.php?domain=interactvlm&sfile="


def _env(tls, url: str | None = None, creds: bool = True, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("INTERACTVLM_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost", CURL_CA_BUNDLE=str(tls["cert"]),
               INTERACTVLM_CURL_RETRIES="0", INTERACTVLM_CONNECT_TIMEOUT="5")
    if url is not None:
        env["INTERACTVLM_DOWNLOAD_URL"] = url
    if creds:
        env.update(INTERACTVLM_USERNAME=USER, INTERACTVLM_PASSWORD=PASSWORD)
    env.update(extra)
    return env


def _run(args, env, cwd=None, script=SCRIPT, timeout=60):
    return subprocess.run(["bash", str(script), *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "repo"
    r.mkdir()
    return r


def _files(folder: Path) -> set[str]:
    if not folder.exists():
        return set()
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink()}


# ---------------------------------------------------------------------------------------------------------------------
# Tests

def test_list_help_and_bad_arguments(tls, root):
    env = _env(tls, creds=False, INTERACTVLM_ROOT=str(root))
    out = _run(["--list"], env)
    assert out.returncode == 0, out.stderr
    for name, file in [("damon-dataset", "damon.tar.gz"), ("lemon-dataset", "lemon.tar.gz"),
                       ("piad-ocontact-dataset", "piad_ocontact_seen.tar.gz"), ("pico-dataset", "pico.tar.gz"),
                       ("hcontact-wScene", "interactvlm-3d-hcontact-wScene-damon-lemon-rich.zip"),
                       ("h2dcontact", "interactvlm-2d-hcontact.zip"),
                       ("joint-reconstruction", "interactvlm-3d-hcontact-ocontact.zip"),
                       ("optim-demo-data", "optim_data.zip"),
                       ("hcontact-damon-fix", "interactvlm-3d-hcontact-damon-fix.zip"),
                       ("hcontact-damon-noParts", "interactvlm-3d-hcontact-damon-noParts.zip"),
                       ("data", "data.zip")]:
        line = next(ln for ln in out.stdout.splitlines() if ln.split()[:1] == [name])
        assert file in line and ("data/" in line or "trained_models/" in line)
        assert "licen" in out.stdout.lower()
    assert "interactvlm-3d-hcontact-damon.zip" in out.stdout
    assert "interactvlm-3d-oafford-lemon-piad.zip" in out.stdout
    assert _run(["--help"], env).returncode == 0
    bad = _run(["no-such-thing"], env)
    assert bad.returncode == 2 and "unknown name" in bad.stderr
    http = _run(["data"], _env(tls, url="http://127.0.0.1:1/x?sfile=", INTERACTVLM_ROOT=str(root)))
    assert http.returncode == 2 and "https://" in http.stderr
    assert _files(root) == set()


def test_default_set_installs_next_to_script_not_cwd(tls, server, tmp_path):
    repo = tmp_path / "checkout"
    repo.mkdir()
    shutil.copy(SCRIPT, repo / "fetch_data.sh")
    (repo / "data" / "body_models").mkdir(parents=True)
    (repo / "data" / "body_models" / "mine.txt").write_text("user file")  # existing user data is kept
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    server.log.clear()
    out = _run([], _env(tls, url=_url(server)), cwd=elsewhere, script=repo / "fetch_data.sh")
    assert out.returncode == 0, out.stderr
    assert _files(elsewhere) == set()
    assert _files(repo / "data") == {"hcontact_vitruvian/view_0.png", "smpl_to_smplx.pkl", "body_models/mine.txt"}
    assert (repo / "data" / "smpl_to_smplx.pkl").read_bytes() == BIG
    assert _files(repo / "trained_models") == {
        "interactvlm-3d-hcontact-damon/config.json", "interactvlm-3d-hcontact-damon/model.bin",
        "interactvlm-3d-oafford-lemon-piad/config.json", "interactvlm-2d-hcontact/config.json"}
    # the archives are deleted after extraction, no temporary folders or partial files remain
    assert not list(repo.rglob("*.zip")) and not list(repo.rglob("*.part*")) and not list(repo.rglob(".fetch_data*"))
    assert [e["sfile"] for e in server.log] == ["data.zip", "interactvlm-3d-hcontact-damon.zip",
                                                 "interactvlm-3d-oafford-lemon-piad.zip", "interactvlm-2d-hcontact.zip"]
    assert all(e["authed"] and e["domain"] == "interactvlm" and e["range"] is None for e in server.log)
    assert "sha256 of data.zip: " + hashlib.sha256(ARCHIVES["data.zip"]).hexdigest() in out.stderr


def test_named_items_dataset_and_keep_archive(tls, server, root):
    out = _run(["damon-dataset", "hcontact-damon-fix", "--keep-archive"],
               _env(tls, url=_url(server), INTERACTVLM_ROOT=str(root)))
    assert out.returncode == 0, out.stderr
    assert (root / "data" / "damon" / "train" / "imgname.npy").read_bytes() == b"npy"
    link = root / "data" / "damon" / "latest"
    assert link.is_symlink() and link.read_bytes() == b"npy"
    assert (root / "trained_models" / "interactvlm-3d-hcontact-damon-fix" / "config.json").exists()
    assert (root / "data" / "damon.tar.gz").read_bytes() == ARCHIVES["damon.tar.gz"]
    assert (root / "trained_models" / "interactvlm-3d-hcontact-damon-fix.zip").exists()
    # running again over identical files (symlink included) installs nothing new and needs no download
    server.log.clear()
    again = _run(["damon-dataset", "hcontact-damon-fix"], _env(tls, url=_url(server), INTERACTVLM_ROOT=str(root)))
    assert again.returncode == 0, again.stderr
    assert server.log == [] and link.is_symlink()
    assert not (root / "data" / "damon.tar.gz").exists()


def test_credentials_never_on_a_command_line(tls, server, root):
    env = _env(tls, url=_url(server, "slow"), INTERACTVLM_ROOT=str(root))
    proc = subprocess.Popen(["bash", str(SCRIPT), "hcontact-damon"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    secrets = [PASSWORD.encode(), USER.encode(), urllib.parse.quote(PASSWORD, safe="").encode(),
               urllib.parse.quote(USER, safe="").encode()]
    seen_curl, leaks, curl_env_leak, ps_snapshots = 0, [], False, []
    deadline = time.monotonic() + 30
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    continue
                if any(s in cmdline for s in secrets):
                    leaks.append(cmdline)
                argv0 = cmdline.split(b"\0", 1)[0]
                if argv0.endswith(b"curl"):
                    seen_curl += 1
                    try:
                        environ = Path(f"/proc/{pid}/environ").read_bytes()
                    except OSError:
                        environ = b""
                    curl_env_leak |= PASSWORD.encode() in environ
            if seen_curl and not ps_snapshots and shutil.which("ps"):
                ps_snapshots.append(subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True,
                                                   timeout=10).stdout)
            time.sleep(0.01)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert seen_curl > 10, "curl was never observed while downloading (server not slow enough?)"
    assert not leaks, leaks
    assert not curl_env_leak, "the password was passed to curl in its environment"
    assert all(not any(s in snap for s in secrets) for snap in ps_snapshots)
    assert (root / "trained_models" / "interactvlm-3d-hcontact-damon" / "model.bin").read_bytes() == BIG
    assert PASSWORD not in stdout + stderr


@pytest.mark.parametrize("mode, message", [("ok", "refused the credentials"), ("html", "web page")])
@pytest.mark.parametrize("with_part", [False, True])
def test_wrong_password_extracts_nothing(tls, server, root, mode, message, with_part):
    part = root / "trained_models" / "interactvlm-3d-hcontact-damon.zip.part"
    head = ARCHIVES["interactvlm-3d-hcontact-damon.zip"][:30000]
    if with_part:  # an earlier partial download must survive a wrong password
        part.parent.mkdir(parents=True)
        part.write_bytes(head)
    env = _env(tls, url=_url(server, mode), INTERACTVLM_ROOT=str(root), INTERACTVLM_PASSWORD="wrong")
    out = _run(["hcontact-damon"], env)
    assert out.returncode == 3, out.stderr
    assert message in out.stderr and "interactvlm.is.tue.mpg.de" in out.stderr
    assert _files(root) == ({"trained_models/interactvlm-3d-hcontact-damon.zip.part"} if with_part else set())
    if with_part:
        assert part.read_bytes() == head


def test_no_credentials_without_a_terminal(tls, server, root):
    out = _run(["hcontact-damon"], _env(tls, url=_url(server), creds=False, INTERACTVLM_ROOT=str(root)))
    assert out.returncode == 2
    assert "INTERACTVLM_USERNAME" in out.stderr and "INTERACTVLM_PASSWORD" in out.stderr
    assert _files(root) == set()


def test_unreachable_server_clear_message(tls, root):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"https://127.0.0.1:{port}/download.php?domain=interactvlm&sfile="
    t0 = time.monotonic()
    out = _run(["hcontact-damon"], _env(tls, url=url, INTERACTVLM_ROOT=str(root)))
    assert time.monotonic() - t0 < 20
    assert out.returncode == 4
    assert "cannot reach 127.0.0.1" in out.stderr and "network/proxy" in out.stderr
    assert "browser" in out.stderr and str(root / "trained_models") in out.stderr
    assert not (root / "trained_models").exists() or _files(root / "trained_models") == set()


def test_tls_is_verified(tls, server, root):
    env = _env(tls, url=_url(server), INTERACTVLM_ROOT=str(root), CURL_CA_BUNDLE=str(tls["other"]))
    out = _run(["hcontact-damon"], env)
    assert out.returncode == 4 and "TLS verification" in out.stderr
    assert _files(root) == set()


@pytest.mark.parametrize("mode, cut", [("ok", 40000), ("norange", 40000), ("ok", None)])
def test_resume_partial_download(tls, server, root, mode, cut):
    data = ARCHIVES["interactvlm-3d-hcontact-damon.zip"]
    part = root / "trained_models" / "interactvlm-3d-hcontact-damon.zip.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:cut] if cut else data)  # cut=None: the .part is already complete (server answers 416)
    server.log.clear()
    out = _run(["hcontact-damon"], _env(tls, url=_url(server, mode), INTERACTVLM_ROOT=str(root)))
    assert out.returncode == 0, out.stderr
    offset = cut if cut else len(data)
    assert [e["range"] for e in server.log] == [f"bytes={offset}-"]
    assert (root / "trained_models" / "interactvlm-3d-hcontact-damon" / "model.bin").read_bytes() == BIG
    assert not part.exists()


def test_resume_after_dropped_connection_in_the_same_run(tls, server, root):
    server.log.clear()
    out = _run(["hcontact-damon"], _env(tls, url=_url(server, "drop"), INTERACTVLM_ROOT=str(root)))
    assert out.returncode == 0, out.stderr
    half = len(ARCHIVES["interactvlm-3d-hcontact-damon.zip"]) // 2
    assert [e["range"] for e in server.log] == [None, f"bytes={half}-"]
    assert "resuming" in out.stderr
    assert (root / "trained_models" / "interactvlm-3d-hcontact-damon" / "model.bin").read_bytes() == BIG


def _interrupted_download(env: dict[str, str], part: Path) -> subprocess.Popen:
    """A download of the slow route, Ctrl-C'd once more than 20 kB of it have arrived."""
    # Ctrl-C as a terminal delivers it: a SIGINT the test process happens to ignore must not be inherited (an ignored
    # signal stays ignored across exec, and bash cannot trap it then)
    proc = subprocess.Popen(["bash", str(SCRIPT), "hcontact-damon"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 20
        chunk = part.with_name(part.name + ".new")
        while time.monotonic() < deadline and not (chunk.exists() and chunk.stat().st_size > 20000):
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole process group
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return proc


def test_interrupted_run_keeps_part_and_next_run_resumes(tls, server, root):
    env = _env(tls, url=_url(server, "slow"), INTERACTVLM_ROOT=str(root))
    part = root / "trained_models" / "interactvlm-3d-hcontact-damon.zip.part"
    # the interrupt races the download's end: in the full suite it has landed after the download had finished
    # (exit 0, nothing partial to test); such a run is cleared and the interrupt tried again, at most 3 times
    for _ in range(3):
        proc = _interrupted_download(env, part)
        if proc.returncode != 0:
            break
        shutil.rmtree(root / "trained_models", ignore_errors=True)
    assert proc.returncode != 0, "the download always finished before Ctrl-C reached it"
    size = part.stat().st_size
    data = ARCHIVES["interactvlm-3d-hcontact-damon.zip"]
    assert 0 < size < len(data) and part.read_bytes() == data[:size]
    assert not list(root.rglob(".fetch_data*")) and not list(root.rglob("*.part.new"))
    server.log.clear()
    out = _run(["hcontact-damon"], _env(tls, url=_url(server), INTERACTVLM_ROOT=str(root)))
    assert out.returncode == 0, out.stderr
    assert [e["range"] for e in server.log] == [f"bytes={size}-"]
    assert (root / "trained_models" / "interactvlm-3d-hcontact-damon" / "model.bin").read_bytes() == BIG


def test_prompts_on_a_terminal_without_echoing_the_password(tls, server, root):
    master, slave = pty.openpty()
    env = _env(tls, url=_url(server), creds=False, INTERACTVLM_ROOT=str(root))
    proc = subprocess.Popen(["bash", str(SCRIPT), "h2dcontact"], env=env, stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True)
    os.close(slave)
    seen = b""

    def read_until(token: bytes, timeout: float = 15) -> None:
        nonlocal seen
        end = time.monotonic() + timeout
        while token not in seen and time.monotonic() < end:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    seen += os.read(master, 4096)
                except OSError:
                    break
        assert token in seen, seen

    try:
        read_until(b"Username")
        os.write(master, USER.encode() + b"\n")
        read_until(b"Password:")
        time.sleep(0.2)  # let read -s switch echo off
        os.write(master, PASSWORD.encode() + b"\n")
        read_until(b"done:", timeout=30)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert proc.returncode == 0, seen
    assert PASSWORD.encode() not in seen
    assert (root / "trained_models" / "interactvlm-2d-hcontact" / "config.json").exists()


def test_refuses_to_overwrite_then_force(tls, server, root):
    model = root / "trained_models" / "interactvlm-3d-hcontact-damon"
    model.mkdir(parents=True)
    (model / "config.json").write_text("my own config")
    (model / "model.bin").write_bytes(BIG)  # identical file: not a conflict
    env = _env(tls, url=_url(server), INTERACTVLM_ROOT=str(root))
    server.log.clear()
    out = _run(["hcontact-damon"], env)
    assert out.returncode == 6, out.stderr
    assert "refusing to overwrite 1 existing file" in out.stderr and "config.json" in out.stderr
    assert "--force" in out.stderr
    assert (model / "config.json").read_text() == "my own config"
    assert (root / "trained_models" / "interactvlm-3d-hcontact-damon.zip").exists()  # kept for the next run
    assert not list(root.rglob(".fetch_data*"))
    out = _run(["hcontact-damon", "--force"], env)
    assert out.returncode == 0, out.stderr
    assert (model / "config.json").read_bytes() == b'{"a": 1}'
    assert len(server.log) == 1  # the kept archive was reused
    assert not (root / "trained_models" / "interactvlm-3d-hcontact-damon.zip").exists()


@pytest.mark.parametrize("file, payload", [
    ("interactvlm-3d-hcontact-damon.zip", zip_bytes({"../evil.txt": b"x"})),
    ("interactvlm-3d-hcontact-damon.zip", zip_bytes({"ok/../../evil.txt": b"x"})),
    ("interactvlm-3d-hcontact-damon.zip", zip_bytes({"/tmp/evil-fetch-data-test.txt": b"x"})),
    ("interactvlm-3d-hcontact-damon.zip", zip_bytes({"m/a.txt": b"x"}, symlinks={"m/link": "../../.."})),
    ("interactvlm-3d-hcontact-damon.zip", zip_bytes({"m/a.txt": b"x"}, symlinks={"m/link": "/etc"})),
    ("damon.tar.gz", targz_bytes({"damon/../../evil.txt": b"x"})),
    ("damon.tar.gz", targz_bytes({"/tmp/evil-fetch-data-test.txt": b"x"})),
    ("damon.tar.gz", targz_bytes({"damon/a": b"x"}, symlinks={"damon/link": "../../outside"})),
    ("damon.tar.gz", targz_bytes({"damon/a": b"x"}, symlinks={"damon/etc": "/etc"})),
    ("damon.tar.gz", targz_bytes({"damon/a": b"x"}, hardlinks={"damon/pw": "../etc/passwd"})),
    ("damon.tar.gz", targz_bytes({"damon/x/f": b"x"}, symlinks={"damon/x": "sub"})),  # written through a symlink
    ("interactvlm-3d-hcontact-damon.zip", zip_bytes({"./m/x/f": b"x"}, symlinks={"m/x": "."})),
])
def test_path_traversal_archive_refused(tls, root, file, payload):
    # An archive already in place (e.g. downloaded in a browser) is used without credentials or network.
    name = "damon-dataset" if file.endswith(".tar.gz") else "hcontact-damon"
    dest = root / ("data" if file.endswith(".tar.gz") else "trained_models")
    dest.mkdir(parents=True)
    (dest / file).write_bytes(payload)
    out = _run([name], _env(tls, creds=False, INTERACTVLM_ROOT=str(root)))
    assert out.returncode == 5, out.stderr
    assert "unsafe archive" in out.stderr and "nothing extracted" in out.stderr  # refused before extraction
    assert _files(root) == {f"{dest.name}/{file}"}
    assert not Path("/tmp/evil-fetch-data-test.txt").exists()
    assert not (root / "evil.txt").exists() and not (root.parent / "evil.txt").exists()


def test_dot_slash_member_names_install(tls, root):
    (root / "data").mkdir()
    (root / "data" / "pico.tar.gz").write_bytes(
        targz_bytes({"./pico/train/a.pkl": b"a", "./pico/images/b.jpg": b"b"}, symlinks={"./pico/latest": "train/a.pkl"}))
    out = _run(["pico-dataset"], _env(tls, creds=False, INTERACTVLM_ROOT=str(root)))
    assert out.returncode == 0, out.stderr
    assert _files(root / "data") == {"pico/train/a.pkl", "pico/images/b.jpg", "pico/latest"}


def test_checksums(tls, root):
    dest = root / "trained_models"
    dest.mkdir(parents=True)
    file = "interactvlm-3d-hcontact-damon.zip"
    data = ARCHIVES[file]
    good = hashlib.sha256(data).hexdigest()
    env = _env(tls, creds=False, INTERACTVLM_ROOT=str(root))
    (dest / file).write_bytes(data)
    out = _run(["hcontact-damon", "--sha256", f"{file}={'0' * 64}"], env)
    assert out.returncode == 1 and "sha256 mismatch" in out.stderr and good in out.stderr
    assert _files(root) == {f"trained_models/{file}.bad"}
    # checksums.sha256 (sha256sum format) is read from the repository root
    (dest / f"{file}.bad").unlink()
    (dest / file).write_bytes(data)
    (root / "checksums.sha256").write_text(f"{'f' * 64}  {file}\n")
    out = _run(["hcontact-damon"], env)
    assert out.returncode == 1 and "sha256 mismatch" in out.stderr
    (dest / f"{file}.bad").rename(dest / file)
    (root / "checksums.sha256").write_text(f"{good} *{file}\n")
    out = _run(["hcontact-damon"], env)
    assert out.returncode == 0, out.stderr
    assert f"sha256 OK for {file}" in out.stderr
    assert (dest / "interactvlm-3d-hcontact-damon" / "model.bin").read_bytes() == BIG
