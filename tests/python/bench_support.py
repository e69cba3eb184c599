"""Helpers of the `apr bench` Python tests: running apr, the JSON Schema, and the loopback
OpenAI-compatible test server (openai_sse_server.py) started and stopped around a test."""
import contextlib
import json
import os
import pathlib
import subprocess
import sys

import jsonschema

APR = os.environ.get("APR", "build/apr")
ROOT = pathlib.Path(os.environ.get("REALIZAR_SOURCE_DIR", pathlib.Path(__file__).parents[2]))
HERE = pathlib.Path(__file__).parent


def apr(*args, timeout=300):
    """Runs apr; returns the CompletedProcess (text)."""
    return subprocess.run([APR, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def validate(doc):
    """Raises jsonschema.ValidationError unless `doc` follows docs/bench.schema.json."""
    schema = json.loads((ROOT / "docs/bench.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.Draft202012Validator(schema).validate(doc)


@contextlib.contextmanager
def sse_server(log, *args, lifetime=60):
    """Starts the test server on a free loopback port; yields its base URL; stops it."""
    proc = subprocess.Popen([sys.executable, str(HERE / "openai_sse_server.py"), "--log", str(log),
                             "--lifetime", str(lifetime), *map(str, args)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"the test server said {line!r}"
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.kill()
        proc.wait(timeout=10)


def read_log(log):
    return [json.loads(line) for line in pathlib.Path(log).read_text().splitlines()]
