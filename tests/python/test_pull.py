"""`apr pull`, model references, the cache, `apr list` / `apr rm`, against a mock hub on loopback
(mock_hub.py: the real hub's JSON shapes, redirects and error headers, and faults on request).

Every apr call has a timeout, the mock's sockets and stalls are bounded, and HF_HUB_DOWNLOAD_TIMEOUT
is 1 s, so a stall costs about a second."""
import fcntl
import hashlib
import json
import os
import pathlib
import socket
import subprocess
import time

import pytest

from gguf_split import write_split
from mock_hub import MockHub

APR = os.environ.get("APR", "build/apr")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Small real GGUF models (apr synth) and a split one (gguf-py's writer)."""
    d = tmp_path_factory.mktemp("models")
    out = {}
    for name, seed in [("a", 1), ("b", 2)]:
        path = d / f"{name}.gguf"
        r = subprocess.run([APR, "synth", "tiny", "-o", str(path), "--type", "q8_0", "--seed",
                            str(seed)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out[name] = path.read_bytes()
    parts = write_split(d / "a.gguf", d / "split" / "tiny-Q8_0.gguf", max_tensors=8)
    out["parts"] = [(p.name, p.read_bytes()) for p in parts]
    out["a_path"] = d / "a.gguf"
    return out


@pytest.fixture
def hub():
    with MockHub() as h:
        yield h


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def run_apr(args, hub=None, home=None, token=None, endpoint=None, timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HUB_DOWNLOAD_TIMEOUT"] = "1"
    if hub is not None or endpoint is not None:
        env["HF_ENDPOINT"] = endpoint or hub.endpoint
    if home is not None:
        env["REALIZAR_HOME"] = str(home)
    if token is not None:
        env["HF_TOKEN"] = token
    return subprocess.run([APR, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def standard_repo(hub, models, repo_id="owner/tiny-GGUF", **options):
    return hub.add_repo(repo_id, {
        "README.md": b"# tiny\n",
        "tiny-Q4_K_M.gguf": models["a"],
        "tiny-Q8_0.gguf": models["b"],
        "mmproj-tiny-Q4_K_M.gguf": b"projector, not a model",
    }, **options)


def cache_dir(home, repo_id, quant):
    owner, name = repo_id.lower().split("/")
    return home / "models" / owner / name / quant


def files_in(directory):
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def closed_port_endpoint():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


# ---- picking and fetching -------------------------------------------------------------------------

def test_pull_picks_the_file_of_the_quant(hub, home, models):
    repo = standard_repo(hub, models)
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 0, r.stderr
    d = cache_dir(home, "owner/tiny-GGUF", "Q4_K_M")
    assert r.stdout.strip() == str(d / "tiny-Q4_K_M.gguf")
    assert (d / "tiny-Q4_K_M.gguf").read_bytes() == models["a"]
    assert files_in(d) == ["manifest.json", "tiny-Q4_K_M.gguf"]
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["reference"] == "owner/tiny-GGUF:Q4_K_M"
    assert manifest["commit"] == repo.commit
    assert manifest["architecture"] == "llama"
    assert manifest["files"] == [{"name": "tiny-Q4_K_M.gguf", "path_in_repo": "tiny-Q4_K_M.gguf",
                                  "size": len(models["a"]),
                                  "sha256": hashlib.sha256(models["a"]).hexdigest()}]
    # The listing asked for sizes and digests; the file came by the commit, through the CDN.
    assert hub.requests_to("api", f"/api/models/owner/tiny-GGUF/revision/main?blobs=true")
    assert hub.requests_to("api", f"/owner/tiny-GGUF/resolve/{repo.commit}/tiny-Q4_K_M.gguf")
    assert len(hub.requests_to("cdn")) == 1

    r = run_apr(["pull", "owner/tiny-gguf:q8_0"], hub, home)  # case-insensitive
    assert r.returncode == 0, r.stderr
    assert pathlib.Path(r.stdout.strip()).read_bytes() == models["b"]
    assert "100%" in r.stderr  # the final progress line, also when not on a terminal


def test_unknown_quant_lists_the_gguf_files(hub, home, models):
    standard_repo(hub, models)
    r = run_apr(["pull", "owner/tiny-GGUF:Q2_K"], hub, home)
    assert r.returncode == 1
    assert ("repository owner/tiny-GGUF has no GGUF file for Q2_K; its GGUF files: "
            "tiny-Q4_K_M.gguf, tiny-Q8_0.gguf (name one as owner/tiny-GGUF:QUANT)") in r.stderr
    assert not (home / "models" / "owner" / "tiny-gguf" / "Q2_K").exists() or \
        files_in(home / "models" / "owner" / "tiny-gguf" / "Q2_K") == []


def test_several_matching_files_are_an_error(hub, home, models):
    hub.add_repo("owner/two", {"x-Q8_0.gguf": models["a"], "y.Q8_0.gguf": models["b"]})
    r = run_apr(["pull", "owner/two:Q8_0"], hub, home)
    assert r.returncode == 1
    assert "repository owner/two has several GGUF files for Q8_0: x-Q8_0.gguf, y.Q8_0.gguf" in r.stderr


def test_split_model_pulled_and_opened_by_reference(hub, home, models):
    files = {f"Q8_0/{name}": data for name, data in models["parts"]}
    hub.add_repo("owner/split-GGUF", files)
    r = run_apr(["pull", "owner/split-GGUF:Q8_0"], hub, home)
    assert r.returncode == 0, r.stderr
    d = cache_dir(home, "owner/split-GGUF", "Q8_0")
    names = [name for name, _ in models["parts"]]
    assert len(names) == 3 and names[0] == "tiny-Q8_0-00001-of-00003.gguf"
    assert files_in(d) == sorted(names + ["manifest.json"])
    for name, data in models["parts"]:
        assert (d / name).read_bytes() == data
    assert r.stdout.strip() == str(d / names[0])

    # inspect and run by reference, from the cache: the same as the unsplit file.
    got = run_apr(["inspect", "owner/split-GGUF:Q8_0", "--json"], hub, home)
    assert got.returncode == 0, got.stderr
    want = run_apr(["inspect", models["a_path"], "--json"])
    assert json.loads(got.stdout)["tensors"] == json.loads(want.stdout)["tensors"]
    args = ["-p", "Hello", "-n", "8", "--temp", "0", "--ignore-eos", "--device", "cpu"]
    split_run = run_apr(["run", "owner/split-GGUF:Q8_0", *args], hub, home)
    whole_run = run_apr(["run", models["a_path"], *args])
    assert split_run.returncode == 0, split_run.stderr
    assert split_run.stdout == whole_run.stdout
    assert len(hub.requests_to("cdn")) == 3  # the later commands did not download again


def test_single_file_is_preferred_to_a_split_model(hub, home, models):
    files = {name: data for name, data in models["parts"]}
    files["tiny-Q8_0.gguf"] = models["b"]
    hub.add_repo("owner/both", files)
    r = run_apr(["pull", "owner/both:Q8_0"], hub, home)
    assert r.returncode == 0, r.stderr
    assert pathlib.Path(r.stdout.strip()).name == "tiny-Q8_0.gguf"


def test_split_model_missing_a_part_in_the_listing(hub, home, models):
    files = {name: data for name, data in models["parts"][:2]}
    hub.add_repo("owner/broken", files)
    r = run_apr(["pull", "owner/broken:Q8_0"], hub, home)
    assert r.returncode == 1
    assert "split model tiny-Q8_0-{1..3}-of-00003.gguf lacks part 3" in r.stderr


def test_output_dir_instead_of_the_cache(hub, home, models, tmp_path):
    standard_repo(hub, models)
    out = tmp_path / "out"
    r = run_apr(["pull", "owner/tiny-GGUF", "-o", out], hub, home)
    assert r.returncode == 0, r.stderr
    assert files_in(out) == ["tiny-Q4_K_M.gguf"]
    assert (out / "tiny-Q4_K_M.gguf").read_bytes() == models["a"]
    assert not (home / "models").exists()
    listing = run_apr(["list", "--json"], hub, home)
    assert listing.returncode == 0 and json.loads(listing.stdout) == []


def test_alias_names_its_repository(hub, home, models):
    hub.add_repo("Qwen/Qwen2.5-Coder-7B-Instruct-GGUF",
                 {"qwen2.5-coder-7b-instruct-q4_k_m.gguf": models["a"],
                  "qwen2.5-coder-7b-instruct-q8_0.gguf": models["b"]})
    r = run_apr(["pull", "qwen2.5-coder:7b"], hub, home)
    assert r.returncode == 0, r.stderr
    d = cache_dir(home, "Qwen/Qwen2.5-Coder-7B-Instruct-GGUF", "Q4_K_M")
    assert r.stdout.strip() == str(d / "qwen2.5-coder-7b-instruct-q4_k_m.gguf")


def test_revision_is_used_and_kept_apart(hub, home, models):
    repo = standard_repo(hub, models, revisions=("main", "v1"))
    r = run_apr(["pull", "owner/tiny-GGUF:Q8_0@v1"], hub, home)
    assert r.returncode == 0, r.stderr
    assert pathlib.Path(r.stdout.strip()).parent == cache_dir(home, "owner/tiny-GGUF", "Q8_0@v1")
    assert hub.requests_to("api", "/revision/v1?blobs=true")
    r = run_apr(["pull", "owner/tiny-GGUF@v9"], hub, home)
    assert r.returncode == 1
    assert "repository owner/tiny-GGUF has no revision v9 (HTTP 404; the hub says: Invalid rev id: v9)" in r.stderr


# ---- failures and recovery ------------------------------------------------------------------------

def test_dropped_connection_is_resumed_with_a_range(hub, home, models):
    standard_repo(hub, models)
    cut = len(models["a"]) * 2 // 5
    hub.add_fault("drop", "cdn", match="tiny-Q4_K_M.gguf", at=cut)
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 0, r.stderr
    assert "attempt 1 of 5 failed, retrying in 1 s" in r.stderr
    cdn = hub.requests_to("cdn")
    assert len(cdn) == 2 and "Range" not in cdn[0].headers
    resumed_at = int(cdn[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= cut
    d = cache_dir(home, "owner/tiny-GGUF", "Q4_K_M")
    assert (d / "tiny-Q4_K_M.gguf").read_bytes() == models["a"]
    assert files_in(d) == ["manifest.json", "tiny-Q4_K_M.gguf"]


def test_partial_file_of_an_earlier_run_is_resumed(hub, home, models):
    standard_repo(hub, models)
    d = cache_dir(home, "owner/tiny-GGUF", "Q4_K_M")
    d.mkdir(parents=True)
    half = len(models["a"]) // 2
    (d / "tiny-Q4_K_M.gguf.partial").write_bytes(models["a"][:half])
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 0, r.stderr
    assert "tiny-Q4_K_M.gguf: resuming at" in r.stderr
    assert hub.requests_to("cdn")[0].headers["Range"] == f"bytes={half}-"
    assert (d / "tiny-Q4_K_M.gguf").read_bytes() == models["a"]


def test_a_download_in_progress_elsewhere_is_not_joined(hub, home, models):
    standard_repo(hub, models)
    d = cache_dir(home, "owner/tiny-GGUF", "Q4_K_M")
    d.mkdir(parents=True)
    with open(d / "tiny-Q4_K_M.gguf.partial", "wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as another apr pull holds it
        r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 1
    assert f"{d / 'tiny-Q4_K_M.gguf.partial'} is being written by another apr process" in r.stderr
    assert run_apr(["pull", "owner/tiny-GGUF"], hub, home).returncode == 0  # once released


def test_server_ignoring_the_range_starts_over(hub, home, models):
    standard_repo(hub, models)
    d = cache_dir(home, "owner/tiny-GGUF", "Q4_K_M")
    d.mkdir(parents=True)
    (d / "tiny-Q4_K_M.gguf.partial").write_bytes(models["a"][:1000])
    hub.add_fault("ignore_range", "cdn", match="tiny-Q4_K_M.gguf")
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 0, r.stderr
    assert "the server ignored the range; starting over" in r.stderr
    assert (d / "tiny-Q4_K_M.gguf").read_bytes() == models["a"]


def test_stalled_transfer_is_retried(hub, home, models):
    standard_repo(hub, models)
    hub.add_fault("stall", "cdn", match="tiny-Q4_K_M.gguf", at=len(models["a"]) // 3, seconds=4)
    start = time.monotonic()
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 0, r.stderr
    assert "tiny-Q4_K_M.gguf: stalled (no data for 1 s); attempt 1 of 5 failed" in r.stderr
    assert time.monotonic() - start < 15
    assert pathlib.Path(r.stdout.strip()).read_bytes() == models["a"]


def test_server_error_then_success(hub, home, models):
    standard_repo(hub, models)
    hub.add_fault("status", "api", match="/api/models/", status=500)
    hub.add_fault("status", "cdn", match="tiny-Q4_K_M.gguf", status=503)
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 0, r.stderr
    assert "listing owner/tiny-GGUF: HTTP 500; attempt 1 of 5 failed, retrying in 1 s" in r.stderr
    assert "tiny-Q4_K_M.gguf: HTTP 503; attempt 1 of 5 failed, retrying in 1 s" in r.stderr


def test_retries_are_bounded(hub, home, models):
    standard_repo(hub, models)
    hub.add_fault("status", "api", match="/api/models/", status=503, times=99)
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home, timeout=90)
    assert r.returncode == 1
    assert "listing owner/tiny-GGUF: giving up after 5 attempts: HTTP 503" in r.stderr
    assert r.stderr.count("failed, retrying in") == 4
    assert len(hub.requests_to("api")) == 5


def test_wrong_checksum_leaves_nothing_that_looks_complete(hub, home, models):
    standard_repo(hub, models)
    hub.add_fault("corrupt", "cdn", match="tiny-Q4_K_M.gguf", at=5000)
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 1
    want = hashlib.sha256(models["a"]).hexdigest()
    assert f"tiny-Q4_K_M.gguf: the SHA-256 of the downloaded bytes is " in r.stderr
    assert f", the hub's is {want}; the download was deleted" in r.stderr
    assert files_in(cache_dir(home, "owner/tiny-GGUF", "Q4_K_M")) == []
    listing = run_apr(["list", "--json"], hub, home)
    assert json.loads(listing.stdout) == []


def test_more_bytes_than_listed_is_refused(hub, home, models):
    standard_repo(hub, models)
    hub.add_fault("extra", "cdn", match="tiny-Q4_K_M.gguf")
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 1
    assert f"tiny-Q4_K_M.gguf: the server sent more than the {len(models['a'])} bytes the hub lists" in r.stderr
    assert files_in(cache_dir(home, "owner/tiny-GGUF", "Q4_K_M")) == []


def test_missing_repository_404_and_401(hub, home):
    r = run_apr(["pull", "owner/nothing-here"], hub, home, token=MockHub.TOKEN)
    assert r.returncode == 1
    assert "no such repository: owner/nothing-here (HTTP 404; the hub says: Repository not found" in r.stderr
    r = run_apr(["pull", "owner/nothing-here"], hub, home)
    assert r.returncode == 1
    assert ("repository owner/nothing-here was not found, or it is private or gated and needs a "
            "token (set HF_TOKEN) (HTTP 401") in r.stderr
    assert len(hub.requests_to("api")) == 2  # 4xx answers are not retried


def test_missing_file_at_resolve_is_404(hub, home, models):
    hub.add_repo("owner/gone", {"tiny-Q4_K_M.gguf": models["a"]})
    listing_only = hub.repos["owner/gone"]
    listing_only.files = {}  # listed by the override below, but resolve no longer has it
    listing_only.siblings_override = [{"rfilename": "tiny-Q4_K_M.gguf", "size": len(models["a"]),
                                       "lfs": {"sha256": hashlib.sha256(models["a"]).hexdigest(),
                                               "size": len(models["a"])}}]
    r = run_apr(["pull", "owner/gone"], hub, home)
    assert r.returncode == 1
    assert "repository owner/gone has no file tiny-Q4_K_M.gguf at revision main (HTTP 404" in r.stderr


def test_private_repository_needs_the_token(hub, home, models):
    standard_repo(hub, models, repo_id="owner/private-GGUF", private=True)
    r = run_apr(["pull", "owner/private-GGUF"], hub, home)
    assert r.returncode == 1
    assert "repository owner/private-GGUF was not found, or it is private or gated and needs a token (set HF_TOKEN)" in r.stderr

    r = run_apr(["pull", "owner/private-GGUF"], hub, home, token="hf_wrong")
    assert r.returncode == 1
    assert ("repository owner/private-GGUF was not found, or HF_TOKEN does not give access to it "
            "(HTTP 401; the hub says: Invalid credentials in Authorization header)") in r.stderr

    hub.requests.clear()
    r = run_apr(["pull", "owner/private-GGUF"], hub, home, token=MockHub.TOKEN)
    assert r.returncode == 0, r.stderr
    assert pathlib.Path(r.stdout.strip()).read_bytes() == models["a"]
    bearer = f"Bearer {MockHub.TOKEN}"
    assert all(q.headers.get("Authorization") == bearer for q in hub.requests_to("api"))
    assert all("Authorization" not in q.headers for q in hub.requests_to("cdn"))  # other host


def test_gated_repository(hub, home, models):
    standard_repo(hub, models, repo_id="owner/gated-GGUF", gated=True)
    r = run_apr(["pull", "owner/gated-GGUF"], hub, home, token=MockHub.TOKEN)
    assert r.returncode == 1
    assert (f"repository owner/gated-GGUF is gated: accept its terms at {hub.endpoint}/owner/gated-GGUF "
            "with the account of HF_TOKEN (HTTP 403") in r.stderr


def test_malformed_and_hostile_listings(hub, home, models):
    standard_repo(hub, models)
    hub.add_fault("bad_json", "api", match="/api/models/")
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 1
    assert "the hub's listing of owner/tiny-GGUF is not a JSON object" in r.stderr

    evil = hub.add_repo("owner/evil", {"x.gguf": models["a"]})
    evil.siblings_override = [{"rfilename": "../../escape-Q4_K_M.gguf", "size": 10,
                               "lfs": {"sha256": "0" * 64, "size": 10}}]
    r = run_apr(["pull", "owner/evil"], hub, home)
    assert r.returncode == 1
    assert 'the hub\'s listing of owner/evil has an unsafe file name "../../escape-Q4_K_M.gguf"' in r.stderr
    evil.siblings_override = [{"rfilename": "e-Q4_K_M.gguf", "size": 10, "lfs": {"sha256": "xyz", "size": 10}}]
    r = run_apr(["pull", "owner/evil"], hub, home)
    assert r.returncode == 1
    assert "the hub's listing of owner/evil gives no valid SHA-256 for e-Q4_K_M.gguf" in r.stderr


# ---- references in every command, offline use ------------------------------------------------------

def test_run_pulls_on_first_use_then_works_offline(hub, home, models):
    standard_repo(hub, models)
    args = ["-p", "Hello", "-n", "6", "--temp", "0", "--ignore-eos", "--device", "cpu"]
    first = run_apr(["run", "owner/tiny-GGUF", *args], hub, home)
    assert first.returncode == 0, first.stderr
    assert "owner/tiny-GGUF:Q4_K_M is not in the cache; pulling it" in first.stderr
    want = run_apr(["run", models["a_path"], *args])
    assert first.stdout == want.stdout

    offline = closed_port_endpoint()  # nothing listens there
    for command in (["run", "owner/tiny-GGUF", *args], ["inspect", "owner/tiny-GGUF"],
                    ["tokenize", "owner/tiny-GGUF", "--text", "hi"]):
        r = run_apr(command, home=home, endpoint=offline)
        assert r.returncode == 0, (command, r.stderr)
        assert "pulling" not in r.stderr
    text = pathlib.Path(home) / "text.txt"
    text.write_text("Hello there. " * 40)
    r = run_apr(["perplexity", "owner/tiny-GGUF", text, "--ctx", "64", "--chunks", "1"],
                home=home, endpoint=offline)
    assert r.returncode == 0, r.stderr
    assert "Final estimate: PPL" in r.stdout


def test_truncated_cached_file_is_pulled_again(hub, home, models):
    standard_repo(hub, models)
    assert run_apr(["pull", "owner/tiny-GGUF"], hub, home).returncode == 0
    f = cache_dir(home, "owner/tiny-GGUF", "Q4_K_M") / "tiny-Q4_K_M.gguf"
    f.write_bytes(models["a"][:100])
    listing = run_apr(["list"], hub, home)
    assert "owner/tiny-GGUF:Q4_K_M: tiny-Q4_K_M.gguf is missing or truncated" in listing.stderr
    r = run_apr(["inspect", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 0, r.stderr
    assert "is not in the cache; pulling it" in r.stderr
    assert f.read_bytes() == models["a"]


def test_pull_again_keeps_verified_files(hub, home, models):
    standard_repo(hub, models)
    assert run_apr(["pull", "owner/tiny-GGUF"], hub, home).returncode == 0
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 0, r.stderr
    assert "tiny-Q4_K_M.gguf: already present" in r.stderr
    assert len(hub.requests_to("cdn")) == 1


def test_bad_model_arguments(home):
    r = run_apr(["inspect", "no-such-model"], home=home)
    assert r.returncode == 1
    assert ("apr: error: no-such-model: no such file, and not a model reference "
            "(OWNER/REPO[:QUANT][@REVISION], or an alias such as qwen2.5:0.5b)") in r.stderr
    r = run_apr(["run", "models/missing.gguf", "-p", "x"], home=home)
    assert r.returncode == 1
    assert "apr: error: models/missing.gguf: no such file" in r.stderr
    for bad in ["a/b/c", "owner/re po", "owner/repo:Q4 K", "owner/repo@..", "x-/y", "owner--x/y",
                "owner/repo:", "owner/repo.gguf", "/y"]:
        r = run_apr(["pull", bad], home=home)
        assert r.returncode == 1, bad
        assert f"apr: error: {bad}: not a model reference (OWNER/REPO[:QUANT][@REVISION]" in r.stderr
    r = run_apr(["pull", "owner/repo"], home=home, endpoint="ftp://example")
    assert r.returncode == 1
    assert "HF_ENDPOINT must start with http:// or https://, got 'ftp://example'" in r.stderr


# ---- list and rm ------------------------------------------------------------------------------------

def test_list_and_rm(hub, home, models):
    standard_repo(hub, models)
    hub.add_repo("owner/split-GGUF", {name: data for name, data in models["parts"]})
    for ref in ["owner/tiny-GGUF", "owner/tiny-GGUF:Q8_0", "owner/split-GGUF:Q8_0"]:
        assert run_apr(["pull", ref], hub, home).returncode == 0
    offline = closed_port_endpoint()
    r = run_apr(["list"], home=home, endpoint=offline)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["REFERENCE", "FILE", "SIZE", "QUANT", "ARCHITECTURE"]
    rows = [line.split() for line in lines[1:]]
    assert [row[0] for row in rows] == ["owner/split-GGUF:Q8_0", "owner/tiny-GGUF:Q4_K_M",
                                        "owner/tiny-GGUF:Q8_0"]
    assert rows[0][1:3] == ["tiny-Q8_0-00001-of-00003.gguf", "(+2"]
    assert rows[1][1] == "tiny-Q4_K_M.gguf" and rows[1][-2:] == ["Q4_K_M", "llama"]

    listed = json.loads(run_apr(["list", "--json"], home=home, endpoint=offline).stdout)
    assert [m["reference"] for m in listed] == [row[0] for row in rows]
    split_size = sum(len(data) for _, data in models["parts"])
    assert listed[0]["size"] == split_size and len(listed[0]["files"]) == 3
    assert listed[1]["size"] == len(models["a"])

    r = run_apr(["rm", "owner/tiny-GGUF:q8_0", "owner/split-GGUF:Q8_0"], home=home, endpoint=offline)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "removed owner/tiny-GGUF:Q8_0\nremoved owner/split-GGUF:Q8_0\n"
    assert not (home / "models" / "owner" / "split-gguf").exists()
    listed = json.loads(run_apr(["list", "--json"], home=home, endpoint=offline).stdout)
    assert [m["reference"] for m in listed] == ["owner/tiny-GGUF:Q4_K_M"]

    r = run_apr(["rm", "owner/tiny-GGUF:Q8_0", "not a ref", "owner/tiny-GGUF"], home=home)
    assert r.returncode == 1
    assert "owner/tiny-GGUF:Q8_0 is not in the cache (apr list shows what is)" in r.stderr
    assert "not a ref: not a model reference" in r.stderr
    assert r.stdout == "removed owner/tiny-GGUF:Q4_K_M\n"  # the valid one still goes
    assert json.loads(run_apr(["list", "--json"], home=home).stdout) == []


def test_rm_removes_an_unfinished_pull(hub, home, models):
    standard_repo(hub, models)
    hub.add_fault("status", "cdn", match="tiny-Q4_K_M.gguf", status=403)
    r = run_apr(["pull", "owner/tiny-GGUF"], hub, home)
    assert r.returncode == 1
    d = cache_dir(home, "owner/tiny-GGUF", "Q4_K_M")
    assert files_in(d) == ["tiny-Q4_K_M.gguf.partial"]
    listing = run_apr(["list"], home=home)
    assert "an unfinished pull (apr pull resumes it, apr rm removes it)" in listing.stderr
    assert run_apr(["rm", "owner/tiny-GGUF"], home=home).returncode == 0
    assert not d.exists()


def test_list_reports_a_broken_manifest_and_lists_the_rest(hub, home, models):
    standard_repo(hub, models)
    assert run_apr(["pull", "owner/tiny-GGUF"], hub, home).returncode == 0
    broken = home / "models" / "other" / "repo" / "Q4_K_M"
    broken.mkdir(parents=True)
    (broken / "manifest.json").write_text("{not json")
    r = run_apr(["list", "--json"], home=home)
    assert r.returncode == 0
    assert f"{broken / 'manifest.json'}: not a manifest: malformed JSON" in r.stderr
    assert [m["reference"] for m in json.loads(r.stdout)] == ["owner/tiny-GGUF:Q4_K_M"]
    # A reference whose manifest is broken is pulled again rather than trusted.
    hub.add_repo("other/repo", {"m-Q4_K_M.gguf": models["b"]})
    r = run_apr(["inspect", "other/repo"], hub, home)
    assert r.returncode == 0, r.stderr
    assert "not a manifest" in r.stderr and "pulling it" in r.stderr
