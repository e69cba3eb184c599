"""A stand-in for the Hugging Face hub on loopback, for the `apr pull` tests.

It serves what `apr pull` uses, with the real hub's shapes (as huggingface_hub reads them):
  GET /api/models/{repo}[/revision/{rev}][?blobs=true]  model info JSON: id, sha, siblings
                                                       (rfilename, blobId, size, lfs.sha256/size)
  GET /{repo}/resolve/{rev}/{path}   LFS files: 302 to the CDN server with X-Repo-Commit,
                                     X-Linked-Etag, X-Linked-Size; other files: 200
  GET /cdn/{sha256} (a second server, another port)   the bytes, honouring Range (206)
Errors as the hub sends them: 401 + X-Error-Code RepoNotFound for a missing or private repository
without a token, 404 + RepoNotFound with one, 401 "Invalid credentials in Authorization header"
for a wrong token, 403 GatedRepo, 404 RevisionNotFound / EntryNotFound.

Misbehaviour on request (MockHub.add_fault): drop the connection after N bytes, stall for S
seconds after N bytes, answer a status once, ignore Range, corrupt a byte, send extra bytes,
answer malformed JSON. Every request is logged (method, path, headers) in MockHub.requests.
Sockets time out after 10 s and stalls are bounded, so no test can hang on the server.
"""
import hashlib
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Repo:
    repo_id: str
    files: dict  # path in repo -> bytes
    commit: str
    private: bool = False
    gated: bool = False
    revisions: tuple = ("main",)
    siblings_override: list = None  # a listing to send instead of the real one

    def is_lfs(self, path):
        return not path.endswith((".md", ".json", ".gitattributes", ".txt"))


@dataclass
class Fault:
    kind: str          # drop, stall, status, ignore_range, corrupt, extra, bad_json
    target: str        # "api", "resolve" or "cdn"
    match: str = ""    # substring of the path (of the file name for cdn requests)
    at: int = 0        # byte offset for drop / stall / corrupt
    seconds: float = 0.0
    status: int = 500
    times: int = 1     # requests it applies to


@dataclass
class Request:
    server: str
    method: str
    path: str
    headers: dict


def _git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class MockHub:
    TOKEN = "hf_test_token"

    def __init__(self):
        self.repos = {}
        self.faults = []
        self.requests = []
        self.blobs = {}  # sha256 -> (name, bytes)
        self.lock = threading.Lock()
        self.api = _Server(self, "api")
        self.cdn = _Server(self, "cdn")

    @property
    def endpoint(self):
        return self.api.url

    def add_repo(self, repo_id, files, **options):
        commit = hashlib.sha1(repo_id.encode() + b"".join(
            name.encode() + data for name, data in sorted(files.items()))).hexdigest()
        repo = Repo(repo_id, dict(files), commit, **options)
        self.repos[repo_id.lower()] = repo
        for path, data in files.items():
            self.blobs[hashlib.sha256(data).hexdigest()] = (path.rsplit("/", 1)[-1], data)
        return repo

    def add_fault(self, kind, target, **options):
        self.faults.append(Fault(kind, target, **options))

    def take_fault(self, target, path):
        with self.lock:
            for fault in self.faults:
                if fault.target == target and fault.match in path and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def requests_to(self, server, contains=""):
        with self.lock:
            return [r for r in self.requests if r.server == server and contains in r.path]

    def log(self, request):
        with self.lock:
            self.requests.append(request)

    def close(self):
        self.api.close()
        self.cdn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _Server:
    def __init__(self, hub, name):
        handler = type(f"{name}_handler", (_Handler,), {"hub": hub, "server_name": name})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # seconds a connection may sit idle
    hub = None
    server_name = ""

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self.hub.log(Request(self.server_name, "GET", self.path, dict(self.headers.items())))
        try:
            if self.server_name == "cdn":
                self.serve_cdn()
            else:
                self.serve_hub()
        except (BrokenPipeError, ConnectionResetError):
            pass

    # ---- responses -----------------------------------------------------------------------------

    def send(self, status, body=b"", headers=None, content_type="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def hub_error(self, status, code, message):
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self.send(status, {"error": message}, headers)

    # The hub's answer to who may see `repo` (None: go ahead).
    def access_error(self, repo):
        auth = self.headers.get("Authorization", "")
        if auth and auth != f"Bearer {MockHub.TOKEN}":
            return (401, None, "Invalid credentials in Authorization header")
        if repo is None or (repo.private and not auth):
            if auth:
                return (404, "RepoNotFound", "Repository not found")
            return (401, "RepoNotFound", "Repository not found")
        if repo.gated:
            if not auth:
                return (401, "GatedRepo", "Access to model is restricted. Please log in.")
            return (403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are "
                                      "not in the authorized list.")
        return None

    def status_fault(self, target):
        fault = self.hub.take_fault(target, self.path)
        if fault and fault.kind == "status":
            self.send(fault.status, {"error": "injected"})
            return None
        return fault or False

    def serve_hub(self):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        target = "api" if path.startswith("/api/models/") else "resolve"
        fault = self.status_fault(target)
        if fault is None:
            return
        if target == "api":
            self.serve_listing(path[len("/api/models/"):], urllib.parse.parse_qs(url.query), fault)
        else:
            self.serve_resolve(path[1:])

    def serve_listing(self, rest, query, fault):
        parts = rest.split("/")
        repo = self.hub.repos.get("/".join(parts[:2]).lower())
        revision = "/".join(parts[3:]) if len(parts) > 3 and parts[2] == "revision" else "main"
        error = self.access_error(repo)
        if error:
            return self.hub_error(*error)
        if revision not in repo.revisions and revision != repo.commit:
            return self.hub_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if fault and fault.kind == "bad_json":
            return self.send(200, "<html>not json</html>")
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = repo.siblings_override
        if siblings is None:
            siblings = []
            for name, data in sorted(repo.files.items()):
                entry = {"rfilename": name}
                if blobs:
                    entry.update(blobId=_git_blob_sha1(data), size=len(data))
                    if repo.is_lfs(name):
                        entry["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(),
                                        "size": len(data), "pointerSize": 134}
                siblings.append(entry)
        owner = repo.repo_id.split("/")[0]
        self.send(200, {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id, "modelId": repo.repo_id, "author": owner, "sha": repo.commit,
            "lastModified": "2026-11-30T12:00:00.000Z", "createdAt": "2026-11-01T12:00:00.000Z",
            "private": repo.private, "disabled": False,
            "gated": "manual" if repo.gated else False, "downloads": 0, "likes": 0,
            "library_name": "gguf", "tags": ["gguf"], "siblings": siblings,
            "usedStorage": sum(len(d) for d in repo.files.values())})

    def serve_resolve(self, rest):
        # {owner}/{repo}/resolve/{revision}/{path}
        parts = rest.split("/")
        if len(parts) < 5 or parts[2] != "resolve":
            return self.hub_error(404, None, "Not found")
        repo = self.hub.repos.get("/".join(parts[:2]).lower())
        error = self.access_error(repo)
        if error:
            return self.hub_error(*error)
        revision, name = parts[3], "/".join(parts[4:])
        if revision not in repo.revisions and revision != repo.commit:
            return self.hub_error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        if name not in repo.files:
            return self.hub_error(404, "EntryNotFound", "Entry not found")
        data = repo.files[name]
        sha256 = hashlib.sha256(data).hexdigest()
        common = {"X-Repo-Commit": repo.commit, "Accept-Ranges": "bytes"}
        if not repo.is_lfs(name):
            return self.send(200, data, {**common, "ETag": f'"{_git_blob_sha1(data)}"'},
                             "application/octet-stream")
        location = f"{self.hub.cdn.url}/cdn/{sha256}?filename={urllib.parse.quote(name)}"
        self.send(302, f"Found. Redirecting to {location}", {
            **common, "Location": location, "X-Linked-Etag": f'"{sha256}"',
            "X-Linked-Size": str(len(data)), "ETag": f'"{_git_blob_sha1(data)}"'}, "text/plain")

    def serve_cdn(self):
        url = urllib.parse.urlsplit(self.path)
        sha256 = url.path.rsplit("/", 1)[-1]
        if sha256 not in self.hub.blobs:
            return self.send(404, "NoSuchKey", content_type="text/plain")
        name, data = self.hub.blobs[sha256]
        fault = self.hub.take_fault("cdn", name)
        if fault and fault.kind == "status":
            return self.send(fault.status, "injected", content_type="text/plain")
        start = 0
        range_header = self.headers.get("Range")
        if range_header and not (fault and fault.kind == "ignore_range"):
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self.send(416, "", {"Content-Range": f"bytes */{len(data)}"}, "text/plain")
        body = data[start:]
        if fault and fault.kind == "corrupt":
            i = fault.at - start
            if 0 <= i < len(body):
                body = body[:i] + bytes([body[i] ^ 0xFF]) + body[i + 1:]
        if fault and fault.kind == "extra":
            body = body + b"\0" * 4096
        self.send_response(206 if start > 0 else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", f'"{sha256}"')
        self.send_header("Accept-Ranges", "bytes")
        if start > 0:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        if fault and fault.kind in ("drop", "stall"):
            cut = max(0, fault.at - start)
            self.wfile.write(body[:cut])
            self.wfile.flush()
            if fault.kind == "stall":
                time.sleep(min(fault.seconds, 8.0))
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)
