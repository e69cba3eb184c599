"""Running a real `apr serve` for the server tests: a free loopback port (`--port 0`, the bound
port read from the server's log), /health polled until 200 within a deadline, every request
bounded by a timeout, and the server stopped with SIGTERM (killed if it does not exit) also when a
test fails. The server's standard error is kept for assertions (log lines, sanitizer reports)."""
import json
import os
import pathlib
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

APR = os.environ.get("APR", "build/apr")
ROOT = pathlib.Path(os.environ.get("REALIZAR_SOURCE_DIR", pathlib.Path(__file__).parents[2]))
QWEN2_TOKENIZER = ROOT / "tests/data/tokenizers/qwen2/tokenizer.json"
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer")


def synth_model(directory, preset="tiny", type_="q8_0", tokenizer=QWEN2_TOKENIZER):
    """A random-weight model of a real shape, with a real tokenizer and chat template unless
    `tokenizer` is None (then synth's 256-byte vocabulary)."""
    path = pathlib.Path(directory) / f"{preset}-{type_}{'' if tokenizer else '-bytes'}.gguf"
    if not path.exists():
        tokenizer_args = ["--tokenizer", str(tokenizer)] if tokenizer else []
        subprocess.run([APR, "synth", preset, "-o", str(path), "--type", type_, *tokenizer_args],
                       check=True, stdout=subprocess.DEVNULL, timeout=600)
    return path


def real_model(name="smollm2-135m"):
    """tools/fetch_models.sh's path of a real model, or None when offline (REALIZAR_OFFLINE=1)."""
    result = subprocess.run([str(ROOT / "tools/fetch_models.sh"), name], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        if os.environ.get("REALIZAR_OFFLINE") == "1":
            return None
        raise RuntimeError(f"tools/fetch_models.sh {name} failed: {result.stderr[-2000:]}")
    return pathlib.Path(result.stdout.strip().splitlines()[-1])


class Server:
    """One `apr serve` process; use as a context manager."""

    def __init__(self, model, *args, ready=True, startup_timeout=120, env=None):
        self.args = [APR, "serve", str(model), "--host", "127.0.0.1", "--port", "0", *map(str, args)]
        self.ready = ready
        self.startup_timeout = startup_timeout
        self.lines = []
        self.port = None
        self.returncode = None
        self.env = {**os.environ, **(env or {})}

    def __enter__(self):
        self.process = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        errors="replace", env=self.env)
        self._listening = threading.Event()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        try:
            if not self._listening.wait(self.startup_timeout):
                raise AssertionError(f"apr serve did not say where it listens:\n{self.log}")
            if self.port is None:
                raise AssertionError(f"apr serve exited before listening:\n{self.log}")
            if self.ready:
                self.wait_ready(self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _read_log(self):
        for line in self.process.stderr:
            self.lines.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
                self._listening.set()
        self._listening.set()

    @property
    def log(self):
        return "".join(self.lines)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"apr serve exited with {self.process.returncode}:\n{self.log}")
            try:
                status, _, _ = self.request("GET", "/health", timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"/health did not answer 200 within {timeout} s:\n{self.log}")

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, headers, body bytes) of one request; `body` may be bytes or a JSON value."""
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        if data is not None and "Content-Type" not in request.headers:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    def json(self, method, path, body=None, headers=None, timeout=60):
        status, response_headers, data = self.request(method, path, body, headers, timeout)
        return status, json.loads(data)

    def rss_kib(self):
        for line in pathlib.Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def stop(self, timeout=30):
        """SIGTERM, then the exit code; SIGKILL (and a failure) if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                self._reader.join(5)
                raise AssertionError(f"apr serve did not exit {timeout} s after SIGTERM:\n{self.log}")
        self._reader.join(5)
        self.returncode = self.process.returncode
        return self.returncode

    def sanitizer_reports(self):
        return [line for line in self.lines if any(mark in line for mark in SANITIZER_MARKS)]


def metrics(server):
    """/metrics parsed by prometheus_client's text parser: {(name, labels without model_name): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    status, _, body = server.request("GET", "/metrics")
    assert status == 200, body
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "model_name"))
            samples[(sample.name, labels)] = sample.value
    return samples


def sse_events(raw):
    """The data fields of a server-sent event stream, checking its framing: every event is one
    `data: ...` line followed by a blank line."""
    text = raw.decode()
    assert text.endswith("\n\n"), text[-200:]
    events = []
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert len(lines) == 1 and lines[0].startswith("data: "), repr(block)
        events.append(lines[0][len("data: "):])
    return events


def dechunk(raw):
    """The body of a chunked HTTP/1.1 response body (after the headers), checking the framing."""
    body = b""
    while True:
        size_line, _, rest = raw.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert rest == b"\r\n", rest
            return body
        body += rest[:size]
        assert rest[size:size + 2] == b"\r\n"
        raw = rest[size + 2:]


def read_until(sock, marker, limit=1 << 24):
    """Bytes from a socket until `marker` has arrived (or the peer closed)."""
    received = b""
    while marker not in received and len(received) < limit:
        data = sock.recv(65536)
        if not data:
            break
        received += data
    return received
