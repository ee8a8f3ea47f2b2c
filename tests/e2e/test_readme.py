"""The README followed literally, from a fresh clone: `make run`, then its commands from a second shell.

The committed HEAD of this checkout is cloned into a temporary directory, and
`make run` is started there in the background (its own process group, killed
at the end) with nothing exported but `PORT`, a free one, so that it collides
with nothing (Redis: `make run` always takes a free port of its own). To keep
the test affordable the clone reuses this checkout's virtualenv: `.venv` is a
symlink to it, and the clone's requirement files (the prerequisites of
`.venv/.installed` in the Makefile) are dated back to 2000 so that
`.venv/.installed` is newer and make does not reinstall.

Every `python manage.py ...` command the README shows is taken from README.md
itself: the lines of its code blocks are run exactly as written, and each
inline command (`importtsv <file> --tenant <slug> [...]`) is run as instances
that must match its README form (placeholders filled, optional parts chosen),
so a README change that breaks a command, or a command the test does not run,
fails here. They run from a second process with a clean environment (no
REDIS_URL, DATABASE_URL, DEBUG or SECRET_KEY) whose `python` is the system's
Python 3, as a newcomer's would be: `manage.py` then re-runs itself with
`.venv`'s. Their effects are checked on the running service: a new document
version reaches an open viewer socket, the chain recipe's buzzer buzzes at
exactly the pin's 0 -> 1 flips, a new feed's producer is started by `make
run`, and the rest as each test says. `runproducer` and `runproducers` are run
after `make run` has stopped (beside it they would run its producers twice,
which is why the README says `make run` already runs them): they must say in
one line that `make run` is not running.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import websockets

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.e2e

START_TIMEOUT = 300.0  # a fresh clone migrates a new SQLite database on a loaded machine
COMMAND_TIMEOUT = 120.0


# --- The README's commands ----------------------------------------------------


def readme_commands(text: str) -> tuple[list[str], list[str]]:
    """(lines of the README's code blocks, inline commands) that start `python manage.py`."""
    blocks = re.findall(r"^ *```[a-z]*\n(.*?)^ *```", text, flags=re.M | re.S)
    block_lines = [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith("python manage.py ")
    ]
    prose = re.sub(r"^ *```.*?^ *```", "", text, flags=re.M | re.S)
    inline = [
        " ".join(span.split())
        for span in re.findall(r"`([^`]+)`", prose)
        if span.startswith("python manage.py ") and not span.endswith("...")
    ]
    return block_lines, inline


def command_name(command: str) -> str:
    return command.split()[2]


def form_pattern(form: str) -> re.Pattern[str]:
    """A README form (`tailfeed <uuid> [--key K] [--count N]`) as a regex its instances match.

    `<...>` and single capitals are placeholders (a word or a '...' quoted
    string); `[...]` is optional; `a|b` is one of those words; ` | ` separates
    alternative arguments (`recomputestats <feed uuid> | --tenant <slug> | --all`).
    """
    head = " ".join(form.split()[:3])
    alternatives = form[len(head) :].split(" | ")
    return re.compile(
        _pattern(head) + r"\s*(?:" + "|".join(_pattern(alt) for alt in alternatives) + ")"
    )


def _pattern(form: str) -> str:
    pattern = ""
    for token in re.split(r"(<[^>]*>|\[|\]|[\w-]+(?:\|[\w-]+)+|\b[A-Z]\b)", form):
        if token.startswith("<") or re.fullmatch(r"[A-Z]", token):
            pattern += r"(?:'[^']*'|\S+)"
        elif token == "[":
            pattern += "(?:"
        elif token == "]":
            pattern += ")?"
        elif "|" in token:
            pattern += "(?:" + "|".join(map(re.escape, token.split("|"))) + ")"
        else:
            pattern += re.escape(token).replace(r"\ ", r"\s*")
    return pattern


def is_instance(command: str, forms: list[str]) -> bool:
    return any(form_pattern(form).fullmatch(" ".join(command.split())) for form in forms)


# --- A clone with make run ----------------------------------------------------


def system_python() -> str:
    """A Python 3.11+ outside .venv, as a newcomer's `python`; .venv's when there is none."""
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate):
            check = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                capture_output=True,
                text=True,
            )
            if check.stdout.strip() == "True":
                return candidate
    return str((ROOT / ".venv" / "bin" / "python").resolve())


@dataclass
class Clone:
    path: Path
    home: Path
    bin: Path
    url: str = ""
    output: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] | None = None

    def env(self, **extra: str) -> dict[str, str]:
        """A second shell's environment: nothing of the test's own (no REDIS_URL, DEBUG...)."""
        return {
            "HOME": str(self.home),
            "PATH": f"{self.bin}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            **extra,
        }

    def run(self, command: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """`command` typed into a shell in the clone, as written."""
        return subprocess.run(
            command,
            shell=True,
            cwd=self.path,
            env=self.env(**extra),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )

    def ok(self, command: str, **env: str) -> subprocess.CompletedProcess[str]:
        done = self.run(command, **env)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{command}\n{done.stderr}"
        return done

    def json(self, command: str) -> dict:
        return json.loads(self.ok(command).stdout)

    def database(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path / 'db.sqlite3'}?mode=ro", uri=True, timeout=30)


def installed_prerequisites(makefile: Path) -> list[str]:
    """What the Makefile's ``$(VENV)/.installed`` rule depends on (the requirement files)."""
    for line in makefile.read_text().splitlines():
        if line.startswith("$(VENV)/.installed:"):
            return line.split(":", 1)[1].split()
    raise AssertionError("the Makefile has no $(VENV)/.installed rule")


def make_clone(base: Path) -> Clone:
    path = base / "streamsite"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(path)], check=True)
    venv = (ROOT / ".venv").resolve()
    assert (venv / ".installed").exists(), "set up .venv first (make test)"
    (path / ".venv").symlink_to(venv)
    # Every prerequisite of the Makefile's .venv/.installed, dated 2000-01-01.
    for prerequisite in installed_prerequisites(path / "Makefile"):
        os.utime(path / prerequisite, (946684800, 946684800))
    clone = Clone(path=path, home=base / "home", bin=base / "bin")
    clone.home.mkdir()
    clone.bin.mkdir()
    (clone.bin / "python").symlink_to(system_python())
    return clone


def start_make_run(clone: Clone, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        ["make", "run"],
        cwd=clone.path,
        env=clone.env(PORT=str(port)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            clone.output.append(line)
            if found := re.match(r"Streamsite is running at (http://\S+?)/?$", line.strip()):
                clone.url = found.group(1)
                started.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while not started.wait(0.5):
        assert process.poll() is None, "make run exited:\n" + "".join(clone.output)
        assert time.monotonic() < deadline, "make run printed no URL:\n" + "".join(clone.output)
    while True:  # the URL is printed as Daphne starts
        try:
            if requests.get(f"{clone.url}/healthz", timeout=5).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        assert time.monotonic() < deadline, "the server never answered /healthz"
        time.sleep(0.5)


def stop_make_run(process: subprocess.Popen[str]) -> None:
    """Ctrl-C to its process group, as a terminal sends it; then kill whatever of it is left."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group has exited
    process.wait(10)


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Iterator[Clone]:
    if not shutil.which("make") or not shutil.which("git") or not (ROOT / ".git").exists():
        pytest.skip("make, git and a git checkout are needed")
    clone = make_clone(tmp_path_factory.mktemp("readme"))
    # The commands come from this checkout's README; the clone is its committed HEAD.
    assert (clone.path / "README.md").read_text() == README, "commit README.md first"
    clone.process = start_make_run(clone, free_port())
    try:
        yield clone
    finally:
        stop_make_run(clone.process)


def wait_until(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def history(clone: Clone, feed: str, key: str) -> list[dict]:
    answer = requests.get(
        f"{clone.url}/api/feeds/{feed}/samples/",
        params={"format": "json", "key": key},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


README = (ROOT / "README.md").read_text()
BLOCK_COMMANDS, INLINE_FORMS = readme_commands(README)


def forms_of(name: str) -> list[str]:
    return [form for form in INLINE_FORMS if command_name(form) == name]


def instance(command: str) -> str:
    """`command`, after checking that it is one of the README's forms of it."""
    assert is_instance(command, forms_of(command_name(command))), (
        f"{command!r} is not what the README shows: {forms_of(command_name(command))}"
    )
    return command


# --- The tests ------------------------------------------------------------------

# Every command the README shows, by the test that runs it.
RUN_BY = {
    "createtenant": "test_createtenant_makes_an_owner_who_can_sign_in",
    "createfeed": "test_the_chain_recipe_buzzes_at_the_pins_flips_to_one",
    "addproducer": "test_the_chain_recipe_buzzes_at_the_pins_flips_to_one",
    "tailfeed": "test_a_new_shared_feed_runs_its_producer_and_tailfeed_follows_it",
    "importtsv": "test_importtsv_new_version_reaches_an_open_viewer",
    "recomputestats": "test_recomputestats_rebuilds_a_feed_of_the_running_service",
    "check": "test_check_deploy_with_production_values_reports_no_issues",
    "collectstatic": "test_check_deploy_with_production_values_reports_no_issues",
    "runproducer": "test_without_make_run_live_commands_say_so_in_one_line",
    "runproducers": "test_without_make_run_live_commands_say_so_in_one_line",
}


def test_every_readme_command_is_run_here() -> None:
    shown = {command_name(command) for command in BLOCK_COMMANDS + INLINE_FORMS}

    assert shown == set(RUN_BY)
    assert len(BLOCK_COMMANDS) >= 6  # the chain recipe
    assert all(is_instance(command, forms_of(command_name(command))) for command in BLOCK_COMMANDS)


def test_the_chain_recipe_buzzes_at_the_pins_flips_to_one(clone: Clone) -> None:
    outputs = [clone.json(command) for command in BLOCK_COMMANDS]
    names = [re.search(r"--name (\S+)", c) for c in BLOCK_COMMANDS]
    feeds = {m.group(1): out for m, out in zip(names, outputs, strict=True) if m}
    buzzer, pin = feeds["my-buzzer"], feeds["my-pin"]
    assert all(set(out) == {"uuid", "feed", "token"} for out in outputs[3:])

    buzzes = wait_until(
        lambda: (
            (found := history(clone, buzzer["uuid"], buzzer["key"])) and len(found) >= 3 and found
        ),
        90,
        "three buzzes",
    )

    with clone.database() as db:
        pin_samples = db.execute(
            "SELECT s.value, s.ts FROM streams_sample s JOIN streams_feed f ON f.id = s.feed_id"
            " WHERE f.name = 'my-pin' ORDER BY s.seq"
        ).fetchall()
    assert len({value for value, _ in pin_samples}) == 2, pin_samples  # it does toggle
    flips, previous = [], 0
    for value, ts in pin_samples:
        if previous == 0 and value == 1:
            flips.append(ts)
        previous = value
    last = buzzes[-1]["ts"]
    assert [b["ts"] for b in buzzes] == [ts for ts in flips if ts <= last]
    assert {b["value"] for b in buzzes} == {1}
    assert pin["key"] is None  # the recipe shares the buzzer only


def test_importtsv_new_version_reaches_an_open_viewer(clone: Clone, tmp_path: Path) -> None:
    first, second = tmp_path / "shared.tsv", tmp_path / "second.tsv"
    first.write_text("city\tpeople\nOslo\t700000\n")
    second.write_text("city\tpeople\nBern\t140000\nRome\t2800000\n")
    created = clone.json(
        instance(
            f"python manage.py importtsv {first} --tenant demo --name cities --share follow --json"
        )
    )

    async def watch() -> dict:
        url = f"{clone.url.replace('http', 'ws', 1)}/ws/documents/{created['uuid']}/?key={created['key']}"
        async with websockets.connect(url) as socket:
            page = json.loads(await asyncio.wait_for(socket.recv(), 30))
            assert (page["type"], page["version"], page["data"]) == (
                "page",
                1,
                [["Oslo", "700000"]],
            )
            done = await asyncio.to_thread(
                clone.ok,
                instance(
                    f"python manage.py importtsv {second} --tenant demo"
                    f" --document {created['uuid']} --json"
                ),
            )
            assert json.loads(done.stdout)["uuid"] == created["uuid"]
            while True:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 30))
                if frame["type"] == "page":
                    return frame

    page = asyncio.run(watch())

    assert (page["version"], page["data"]) == (2, [["Bern", "140000"], ["Rome", "2800000"]])


def test_a_new_shared_feed_runs_its_producer_and_tailfeed_follows_it(clone: Clone) -> None:
    created = clone.json(
        instance(
            "python manage.py createfeed --tenant demo --name coin --kind binary --share"
            ' --producer bernoulli --config \'{"p": 0.5, "interval_ms": 100}\' --json'
        )
    )
    # make run starts the new producer by itself.
    wait_until(lambda: len(history(clone, created["uuid"], created["key"])) >= 5, 60, "samples")

    # --url left out: tailfeed finds where make run serves (not port 8000).
    tail = clone.ok(instance(f"python manage.py tailfeed {created['uuid']} --count 3"))
    assert len(re.findall(r"^seq=\d+ value=[01](\.0)? alpha=", tail.stdout, flags=re.M)) == 3

    external = clone.json(
        instance("python manage.py addproducer --tenant demo --feed coin --kind external --json")
    )
    answer = requests.post(
        f"{clone.url}/api/feeds/{created['uuid']}/samples/",
        json={"value": 1},
        headers={"Authorization": f"Bearer {external['token']}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def test_createtenant_makes_an_owner_who_can_sign_in(clone: Clone) -> None:
    done = clone.ok(instance("python manage.py createtenant readers --owner rita"))
    password = re.search(r"password (\S+) \(shown only once\)", done.stdout).group(1)

    session = requests.Session()
    login = session.get(f"{clone.url}/accounts/login/", timeout=30)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    signed_in = session.post(
        f"{clone.url}/accounts/login/",
        data={"username": "rita", "password": password, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{clone.url}/accounts/login/"},
        timeout=30,
    )
    assert signed_in.status_code == 200 and "/accounts/login/" not in signed_in.url
    assert "readers" in session.get(f"{clone.url}/", timeout=30).text

    refused = clone.run(instance("python manage.py createtenant 'Bad Slug!' --owner rita"))
    assert refused.returncode == 1 and "not a slug" in refused.stderr
    assert "Traceback" not in refused.stderr


def demo_feed(clone: Clone) -> str:
    """The Bernoulli feed's UUID, from what make run printed ("demo feed: <url>")."""
    printed = "".join(clone.output)
    return re.search(r"^demo feed: \S+/feeds/([0-9a-f-]{36})/", printed, flags=re.M).group(1)


def test_recomputestats_rebuilds_a_feed_of_the_running_service(clone: Clone) -> None:
    feed = demo_feed(clone)

    done = clone.ok(instance(f"python manage.py recomputestats {feed}"))

    assert feed in done.stdout
    assert clone.ok(instance("python manage.py recomputestats --tenant demo")).stdout


def test_check_deploy_with_production_values_reports_no_issues(clone: Clone) -> None:
    production = {
        "DEBUG": "0",
        "SECRET_KEY": "x" * 10 + "a-production-secret-key-of-fifty-characters-or-more",
        "ALLOWED_HOSTS": "streams.example.org",
        # Named, not reached: the checks read the settings only.
        "DATABASE_URL": "postgres://streamsite@127.0.0.1:5432/streamsite",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
    }
    clone.ok(instance("python manage.py collectstatic --noinput"), **production)
    done = clone.run(instance("python manage.py check --deploy"), **production)
    assert done.returncode == 0, done.stderr
    assert "System check identified no issues" in done.stdout


def test_without_make_run_live_commands_say_so_in_one_line(clone: Clone, tmp_path: Path) -> None:
    assert clone.process is not None
    stop_make_run(clone.process)
    # make run's Ctrl-C stopped all it started (its last line may still be on its way here).
    wait_until(lambda: "Stopped." in "".join(clone.output), 10, "make run's last line")
    assert not (clone.path / "var" / "redis" / "url").exists()
    assert not (clone.path / "var" / "server" / "url").exists()
    data = tmp_path / "late.tsv"
    data.write_text("a\n1\n")

    for command in (
        instance(f"python manage.py runproducer {demo_feed(clone)}"),
        instance("python manage.py runproducers"),
        instance(f"python manage.py importtsv {data} --tenant demo --json"),
    ):
        done = clone.run(command)
        assert done.returncode == 1, f"{command}: {done.returncode}\n{done.stderr}"
        assert done.stderr.strip().count("\n") == 0 and "make run" in done.stderr, done.stderr
