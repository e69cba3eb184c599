"""A small OpenAI-compatible server for testing `apr bench serve` on loopback.

It answers GET /v1/models and streams POST /v1/completions and /v1/chat/completions the way
llama-server and vLLM do (``stream: true``): ``data: {...}`` chunks one token each, a usage chunk
when ``stream_options.include_usage`` is set, then ``data: [DONE]``. Tokens are the prompt's
words echoed back; the first token comes after --ttft-ms, each next one after --itl-ms. It
generates exactly ``max_tokens`` tokens and counts the prompt's tokens as its words.

--no-usage leaves the usage chunk out, as some servers do; --piece sets every chunk's text.
Faults for the error tests: --fault http500 | hang | malformed | no-done | models404 |
endless-line.

Bounded: it exits after --max-requests requests or --lifetime seconds, whichever comes first.
It prints ``PORT <n>`` when listening and writes one JSON line per request to --log.
"""

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.requests = 0
        self.in_flight = 0
        self.log = open(args.log, "a", encoding="utf-8") if args.log else None
        self.start = time.monotonic()

    def record(self, entry):
        if self.log:
            with self.lock:
                self.log.write(json.dumps(entry) + "\n")
                self.log.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # the body ends when the connection closes, as for SSE

    def log_message(self, format, *args):  # quiet
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        state = self.server.state
        if self.path != "/v1/models":
            self.send_json(404, {"error": {"message": "no route " + self.path}})
        elif state.args.fault == "models404":
            self.send_json(404, {"error": {"message": "models are not listed here"}})
        else:
            self.send_json(200, {"object": "list",
                                 "data": [{"id": state.args.model, "object": "model"}]})

    def do_POST(self):
        state = self.server.state
        received = time.monotonic() - state.start
        length = int(self.headers.get("Content-Length", "0"))
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self.send_json(400, {"error": {"message": "body is not JSON"}})
            return
        chat = self.path == "/v1/chat/completions"
        if self.path not in ("/v1/completions", "/v1/chat/completions"):
            self.send_json(404, {"error": {"message": "no route " + self.path}})
            return
        prompt = body["messages"][-1]["content"] if chat else body.get("prompt", "")
        words = prompt.split()
        max_tokens = int(body.get("max_tokens", 16))
        with state.lock:
            state.requests += 1
            state.in_flight += 1
            in_flight = state.in_flight
        state.record({"time": received, "path": self.path, "model": body.get("model"),
                      "prompt": prompt, "prompt_words": len(words), "max_tokens": max_tokens,
                      "ignore_eos": body.get("ignore_eos"), "stream": body.get("stream"),
                      "include_usage": body.get("stream_options", {}).get("include_usage"),
                      "in_flight": in_flight})
        try:
            self.stream(state, body, chat, words, max_tokens)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with state.lock:
                state.in_flight -= 1
                done = state.requests >= state.args.max_requests
            if done:
                threading.Thread(target=self.server.shutdown, daemon=True).start()

    def stream(self, state, body, chat, words, max_tokens):
        fault = state.args.fault
        if fault == "http500":
            self.send_json(500, {"error": {"message": "model exploded", "type": "server_error"}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if fault == "hang":
            time.sleep(state.args.lifetime)
            return
        if fault == "endless-line":  # one event that never ends: 20 MiB without a newline
            self.wfile.write(b"data: ")
            for _ in range(20):
                self.wfile.write(b"x" * (1 << 20))
            return

        def send(obj):
            text = obj if isinstance(obj, str) else json.dumps(obj)
            self.wfile.write(f"data: {text}\n\n".encode())
            self.wfile.flush()

        kind = "chat.completion.chunk" if chat else "text_completion"
        if chat:  # the role-only first chunk, as OpenAI sends it
            send({"object": kind, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
        time.sleep(state.args.ttft_ms / 1e3)
        for i in range(max_tokens):
            if i > 0:
                time.sleep(state.args.itl_ms / 1e3)
            piece = state.args.piece or " " + (words[i % len(words)] if words else "x")
            choice = ({"index": 0, "delta": {"content": piece}} if chat
                      else {"index": 0, "text": piece})
            if fault == "malformed" and i == 1:
                self.wfile.write(b"data: {not json\n\n")
                self.wfile.flush()
                continue
            send({"object": kind, "choices": [choice]})
        finish = {"index": 0, "finish_reason": "length"}
        finish.update({"delta": {}} if chat else {"text": ""})
        send({"object": kind, "choices": [finish]})
        if body.get("stream_options", {}).get("include_usage") and not state.args.no_usage:
            send({"object": kind, "choices": [],
                  "usage": {"prompt_tokens": len(words), "completion_tokens": max_tokens,
                            "total_tokens": len(words) + max_tokens,
                            "prompt_tokens_details": {"cached_tokens": state.args.cached_tokens}}})
        if fault != "no-done":
            send("[DONE]")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="test-model")
    parser.add_argument("--ttft-ms", type=float, default=20)
    parser.add_argument("--itl-ms", type=float, default=5)
    parser.add_argument("--cached-tokens", type=int, default=0)
    parser.add_argument("--no-usage", action="store_true", help="never send a usage chunk")
    parser.add_argument("--piece", help="the text of every chunk (default: the prompt's words)")
    parser.add_argument("--fault", choices=["http500", "hang", "malformed", "no-done", "models404", "endless-line"])
    parser.add_argument("--max-requests", type=int, default=1000)
    parser.add_argument("--lifetime", type=float, default=120)
    parser.add_argument("--log")
    args = parser.parse_args()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.state = State(args)
    print(f"PORT {server.server_address[1]}", flush=True)
    timer = threading.Timer(args.lifetime, server.shutdown)
    timer.daemon = True
    timer.start()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
