"""`apr chat` end to end: scripted through a pipe (one message or command per line, one answer per
message) on the tiny synth model and on SmolLM2-135M-Instruct, and in a real terminal under tmux
(line editing, Ctrl-C during an answer, Ctrl-D). The rendered prompts `--verbose` prints are
compared with independent renders: ChatML written out here, and the model's own Jinja template
rendered by jinja2 the way transformers' apply_chat_template does."""
import json
import os
import pathlib
import re
import shutil
import subprocess
import time

import gguf
import jinja2.sandbox
import pytest

APR = os.environ.get("APR", "build/apr")
ROOT = pathlib.Path(os.environ.get("REALIZAR_SOURCE_DIR", pathlib.Path(__file__).parents[2]))
TIMEOUT = 300  # seconds for one apr process: every test is bounded
PROMPT_LINE = re.compile(r"^apr: prompt \((\d+) tokens, template ([\w.-]+)\): (.*)$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    subprocess.run([APR, "synth", "tiny", "-o", str(path), "--type", "f32"], check=True,
                   stdout=subprocess.DEVNULL, timeout=TIMEOUT)
    return path


@pytest.fixture(scope="module")
def smollm2():
    result = subprocess.run([str(ROOT / "tools/fetch_models.sh"), "smollm2-135m"], capture_output=True,
                            text=True, timeout=1800)
    if result.returncode != 0:
        if os.environ.get("REALIZAR_OFFLINE") == "1":
            pytest.skip("SmolLM2 is not available offline")
        pytest.fail(f"tools/fetch_models.sh smollm2-135m failed: {result.stderr}")
    return pathlib.Path(result.stdout.strip())


@pytest.fixture()
def home(tmp_path):
    """A REALIZAR_HOME of the test's own (apr keeps the terminal's line history there)."""
    path = tmp_path / "home"
    path.mkdir()
    return path


def chat(model, lines, *flags, cwd, home):
    """Runs `apr chat MODEL FLAGS` with `lines` on standard input (not a terminal)."""
    env = dict(os.environ, REALIZAR_HOME=str(home))
    return subprocess.run([APR, "chat", str(model), *map(str, flags)], input="".join(l + "\n" for l in lines),
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, env=env)


def prompts(stderr):
    """The (tokens, template, text) of each prompt `--verbose` printed."""
    found = []
    for line in stderr.splitlines():
        m = PROMPT_LINE.match(line)
        if m:
            found.append((int(m.group(1)), m.group(2), json.loads(m.group(3))))
    return found


def chatml(messages, generation_prompt=True):
    text = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return text + ("<|im_start|>assistant\n" if generation_prompt else "")


def saved(path):
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


TINY = ("--chat-template", "chatml", "--temp", "0", "--device", "cpu")


# ---- scripted, on the tiny model -------------------------------------------------------------------

def test_two_turns_render_the_whole_conversation_with_the_template(tiny, tmp_path, home):
    r = chat(tiny, ["Hello there", "And again", "/save chat.json"], *TINY, "--system", "Be brief.",
             "-n", "8", "--verbose", cwd=tmp_path, home=home)
    assert r.returncode == 0, r.stderr
    messages = saved(tmp_path / "chat.json")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant"]
    assert [messages[0]["content"], messages[1]["content"], messages[3]["content"]] == \
        ["Be brief.", "Hello there", "And again"]
    rendered = prompts(r.stderr)
    assert [text for _, _, text in rendered] == [chatml(messages[:2]), chatml(messages[:4])]
    assert {template for _, template, _ in rendered} == {"chatml"}
    # One answer per message, each on its own line: standard output holds nothing else.
    assert r.stdout == messages[2]["content"] + "\n" + messages[4]["content"] + "\n"
    # The token counts are the tokenizer's for the rendered text (BOS as the model adds it).
    for tokens, _, text in rendered:
        ids = subprocess.run([APR, "tokenize", str(tiny), "--text", text, "--special", "--bos"], check=True,
                             capture_output=True, text=True, timeout=TIMEOUT).stdout.split()
        assert tokens == len(ids)


def test_every_model_run_names_its_device_model_and_threads(tiny, tmp_path, home):
    r = chat(tiny, [], *TINY, "-t", "2", cwd=tmp_path, home=home)
    assert r.returncode == 0
    assert r.stdout == ""
    # The CPU backend names the kernel set CPUID chose (amx-int8, avx512-vnni, avx2 or scalar).
    [line] = r.stderr.splitlines()
    assert re.fullmatch(r"apr: tiny\.gguf \(llama\) on cpu \((amx-int8|avx512-vnni|avx2|scalar)\), 2 threads, context 256 tokens", line)


def test_clear_forgets_the_turns_and_keeps_the_system_message(tiny, tmp_path, home):
    r = chat(tiny, ["Hello", "/clear", "Again"], *TINY, "--system", "S", "-n", "4", "--verbose",
             cwd=tmp_path, home=home)
    assert r.returncode == 0, r.stderr
    assert "apr: conversation cleared" in r.stderr.splitlines()
    system = {"role": "system", "content": "S"}
    assert [text for _, _, text in prompts(r.stderr)] == [
        chatml([system, {"role": "user", "content": "Hello"}]),
        chatml([system, {"role": "user", "content": "Again"}])]


def test_save_then_load_continues_the_same_conversation(tiny, tmp_path, home):
    first = chat(tiny, ["One", "Two", "/save a.json"], *TINY, "--system", "S", "-n", "6", cwd=tmp_path, home=home)
    assert first.returncode == 0, first.stderr
    assert "apr: saved 5 messages to a.json" in first.stderr.splitlines()
    before = saved(tmp_path / "a.json")

    # A new chat with another system message: /load replaces it with the file's.
    second = chat(tiny, ["/load a.json", "/save b.json", "Three", "/save c.json"], *TINY, "--system", "Other",
                  "-n", "6", "--verbose", cwd=tmp_path, home=home)
    assert second.returncode == 0, second.stderr
    assert "apr: loaded 5 messages from a.json" in second.stderr.splitlines()
    assert saved(tmp_path / "b.json") == before
    after = saved(tmp_path / "c.json")
    assert after[:5] == before
    assert after[5] == {"role": "user", "content": "Three"}
    assert [text for _, _, text in prompts(second.stderr)] == [chatml(after[:6])]


def test_a_chat_request_loads_too(tiny, tmp_path, home):
    (tmp_path / "request.json").write_text(json.dumps(
        {"model": "x", "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}))
    r = chat(tiny, ["/load request.json", "More"], *TINY, "-n", "4", "--verbose", cwd=tmp_path, home=home)
    assert r.returncode == 0, r.stderr
    assert [text for _, _, text in prompts(r.stderr)] == [chatml([
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}, {"role": "user", "content": "More"}])]


def test_bad_files_and_commands_are_one_line_errors_and_the_chat_goes_on(tiny, tmp_path, home):
    (tmp_path / "broken.json").write_text('[{"role": "user", "content": "a"}')
    (tmp_path / "tool.json").write_text('[{"role": "tool", "content": "a"}]')
    r = chat(tiny, ["/load broken.json", "/load tool.json", "/load missing.json", "/save", "/clear now", "/nope",
                    "/save no-such-dir/x.json", "//etc is a folder"], *TINY, "-n", "4", "--verbose",
             cwd=tmp_path, home=home)
    errors = [l for l in r.stderr.splitlines() if l.startswith("apr: error: ")]
    assert errors[0].startswith("apr: error: broken.json: not valid JSON: parse error at line 1, column 34")
    assert errors[1:] == [
        "apr: error: tool.json: messages[0]: unknown role 'tool' (expected system, user or assistant)",
        "apr: error: cannot read missing.json: No such file or directory",
        "apr: error: usage: /save FILE",
        "apr: error: /clear takes no argument",
        "apr: error: unknown command /nope (/help lists them; start a message with // to send a leading /)",
        "apr: error: cannot write no-such-dir/x.json: No such file or directory",
    ]
    # Nothing was loaded; the escaped message went as typed, less one slash; it got its answer.
    assert [text for _, _, text in prompts(r.stderr)] == [chatml([{"role": "user", "content": "/etc is a folder"}])]
    assert r.stdout.endswith("\n") and r.stdout.count("\n") >= 1
    assert r.returncode == 1  # piped: a failed line shows in the exit code


def test_a_full_context_drops_the_oldest_turn_with_its_notice(tiny, tmp_path, home):
    questions = [f"question number {i}, padded to forty bytes"[:40] for i in range(1, 5)]
    lines = []
    for i, q in enumerate(questions):
        lines += [q, f"/save after{i}.json"]
    r = chat(tiny, lines, *TINY, "--system", "S", "--ctx", "224", "-n", "16", "--verbose", cwd=tmp_path, home=home)
    assert r.returncode == 0, r.stderr
    notices = [l for l in r.stderr.splitlines() if l.startswith("apr: context full")]
    assert notices, "the turns must overflow the context"
    # The tiny model's vocabulary is bytes: a turn takes as many tokens as its ChatML text has bytes.
    first_answer = saved(tmp_path / "after0.json")[2]["content"]
    first_turn = chatml([{"role": "user", "content": questions[0]}, {"role": "assistant", "content": first_answer}],
                        generation_prompt=False)
    assert notices[0] == f"apr: context full: dropped the oldest turn ({len(first_turn.encode())} tokens)"
    last = saved(tmp_path / "after3.json")
    assert last[0] == {"role": "system", "content": "S"}
    assert {"role": "user", "content": questions[0]} not in last
    assert last[-2] == {"role": "user", "content": questions[3]}
    for tokens, _, _ in prompts(r.stderr):
        assert tokens + 16 <= 224


def test_a_message_that_cannot_fit_is_refused_and_the_next_one_answered(tiny, tmp_path, home):
    r = chat(tiny, ["x" * 150, "short", "/save chat.json"], *TINY, "--ctx", "128", "-n", "16",
             cwd=tmp_path, home=home)
    assert r.returncode == 1
    assert re.search(r"^apr: error: the message does not fit: the prompt of this message alone takes \d+ tokens, "
                     r"which with room for an answer of 16 passes the context of 128 tokens "
                     r"\(raise --ctx or lower --max-tokens\)$", r.stderr, re.M), r.stderr
    assert [m["content"] for m in saved(tmp_path / "chat.json") if m["role"] == "user"] == ["short"]


def test_options_are_spelled_as_in_apr_run(tiny, tmp_path, home):
    r = chat(tiny, ["Hi", "/stats"], "--chat-template", "chatml", "--temperature", "0", "--max-tokens", "3",
             "--seed", "1", cwd=tmp_path, home=home)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^last answer: \d+ tokens, TTFT [\d.]+ ms, [\d.]+ tok/s, finished: (stop|length)$", r.stdout, re.M)
    assert re.search(r"^context: \d+ of 256 tokens used, 2 messages$", r.stdout, re.M)

    bad = subprocess.run([APR, "chat", str(tiny), "-n", "-1"], capture_output=True, text=True, timeout=TIMEOUT)
    assert bad.returncode != 0
    assert "--max-tokens: must be a number of at least 0, got -1" in bad.stderr
    full = subprocess.run([APR, "chat", str(tiny), "--ctx", "64", "-n", "64"], capture_output=True, text=True,
                          input="", timeout=TIMEOUT)
    assert full.returncode == 1
    assert "apr: error: answers of up to 64 tokens leave no room for a message in the context of 64 tokens" \
        in full.stderr
    missing = subprocess.run([APR, "chat", str(tmp_path / "absent.gguf")], capture_output=True, text=True,
                             input="", timeout=TIMEOUT)
    assert missing.returncode == 1
    assert missing.stderr == f"apr: error: {tmp_path / 'absent.gguf'}: no such file\n"


# ---- scripted, on SmolLM2-135M-Instruct ------------------------------------------------------------

def model_template(path):
    reader = gguf.GGUFReader(path)
    field = reader.fields["tokenizer.chat_template"]
    return field.contents()


def jinja_render(template, messages):
    """What transformers' apply_chat_template renders (its Jinja environment and arguments)."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token="<|im_start|>", eos_token="<|im_end|>")


@pytest.mark.parametrize("system", [None, "You are a helpful assistant."])
def test_smollm2_chats_in_its_own_template_and_reuses_the_cache(smollm2, tmp_path, home, system):
    flags = ["--temp", "0", "-n", "24", "--verbose"] + (["--system", system] if system else [])
    r = chat(smollm2, ["What is the capital of France?", "And of Italy?", "/stats", "/save chat.json"], *flags,
             cwd=tmp_path, home=home)
    assert r.returncode == 0, r.stderr
    messages = saved(tmp_path / "chat.json")
    rendered = prompts(r.stderr)
    template = model_template(smollm2)
    # messages: [system,] question, answer, question, answer
    assert [text for _, _, text in rendered] == [jinja_render(template, messages[:-3]),
                                                 jinja_render(template, messages[:-1])]
    assert {name for _, name, _ in rendered} == {"smollm2"}
    if system:
        # The reviewed greedy answer (docs/real-models.md).
        assert messages[2]["content"].startswith("The capital of France is Paris.")
    # The second prompt starts with the first one and its answer: their whole blocks come from the cache.
    first_tokens = rendered[0][0]
    m = re.search(r"^last prompt: (\d+) tokens, (\d+) from the prefix cache, (\d+) computed", r.stdout, re.M)
    assert m, r.stdout
    assert int(m.group(1)) == rendered[1][0]
    assert int(m.group(2)) >= first_tokens // 16 * 16 > 0
    assert int(m.group(3)) == int(m.group(1)) - int(m.group(2))


# ---- a real terminal (tmux) ------------------------------------------------------------------------

class Tmux:
    """One tmux server of the test's own (its socket in the test's directory), with one window
    running `command`."""

    def __init__(self, socket, command):
        self.socket = str(socket)
        self.run("new-session", "-d", "-s", "chat", "-x", "120", "-y", "40", command)

    def run(self, *args):
        return subprocess.run(["tmux", "-S", self.socket, *args], check=True, capture_output=True, text=True,
                              timeout=30).stdout

    def keys(self, *keys):
        self.run("send-keys", "-t", "chat", *keys)

    def screen(self):
        return self.run("capture-pane", "-p", "-t", "chat", "-S", "-2000")

    def wait_for(self, predicate, what, seconds=120):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.2)
        pytest.fail(f"no {what} within {seconds} s; the screen:\n{self.screen()}")

    def close(self):
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, timeout=30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_smollm2_in_a_terminal_stops_an_answer_on_ctrl_c_and_leaves_on_ctrl_d(smollm2, tmp_path, home):
    done = tmp_path / "exit_code"
    command = (f"REALIZAR_HOME={home} {APR} chat {smollm2} --temp 0 -n 400 --system 'You are a helpful assistant.'; "
               f"echo $? > {done}; sleep 600")
    tmux = Tmux(tmp_path / "tmux.socket", command)
    try:
        tmux.wait_for(lambda s: "/help lists the commands" in s and s.rstrip().endswith(">"), "prompt")
        tmux.keys("Write a very long story about a dragon who learns to cook.", "Enter")
        # Stop it once the answer is streaming: a few lines have come, well before 400 tokens.
        # (The question must be on the screen first: before its echo, the whole screen would count.)
        screen = tmux.wait_for(lambda s: "learns to cook." in s and len(s.split("learns to cook.", 1)[1].strip()) > 80,
                               "streamed answer")
        tmux.keys("C-c")
        screen = tmux.wait_for(lambda s: "apr: stopped (the answer so far stays in the chat)" in s, "stop notice")
        tmux.keys("/stats", "Enter")
        screen = tmux.wait_for(lambda s: "finished: cancelled" in s, "statistics")
        generated = int(re.search(r"last answer: (\d+) tokens", screen).group(1))
        assert 0 < generated < 400
        tmux.keys("/clear", "Enter")
        tmux.wait_for(lambda s: "apr: conversation cleared" in s, "clear notice")
        # Line editing: a missing letter put in after moving left, as readline does.
        tmux.keys("What is the capital of Frnce?")
        tmux.keys("Left", "Left", "Left", "Left", "a", "Enter")
        tmux.wait_for(lambda s: "The capital of France is Paris." in s and s.rstrip().endswith(">"), "answer")
        # History: Up brings the question back; Ctrl-C discards it (no step towards leaving), a Ctrl-C
        # at the empty prompt says how to leave, and Ctrl-D leaves.
        tmux.keys("Up")
        tmux.wait_for(lambda s: s.rstrip().endswith("> What is the capital of France?"), "history")
        tmux.keys("C-c")
        tmux.wait_for(lambda s: s.rstrip().endswith("> What is the capital of France?^C\n>"), "discarded line")
        tmux.keys("C-c")
        screen = tmux.wait_for(lambda s: s.rstrip().endswith("> ^C\napr: Ctrl-C again or Ctrl-D to leave\n>"),
                               "hint to leave")
        assert not done.exists()
        tmux.keys("C-d")
        tmux.wait_for(lambda s: done.exists(), "exit", seconds=30)
        assert done.read_text().strip() == "0"
        history = (home / "chat_history").read_text()
        assert "What is the capital of France?" in history and "/stats" in history
    finally:
        tmux.close()
