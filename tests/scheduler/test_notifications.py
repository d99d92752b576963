"""Failure e-mails: luigi's worker mails the traceback of a failed task when ``[email] receiver`` is set.

A small SMTP server in a thread catches what luigi sends. Luigi (``luigi/notifications.py``) only starts
TLS when the server advertises STARTTLS in its EHLO answer; this one does not, so ``[smtp] no_tls`` is not
needed. Who sends what (``luigi/worker.py``, ``luigi/scheduler.py``): the worker mails "<task> FAILED"
with the traceback each time a task's run() raises (``[worker] send_failure_email``, on by default); the
scheduler mails "DISABLED <task> due to excessive failures" when a task reaches ``retry_count`` failures.
Both go to ``[email] receiver`` only, and nothing is sent without one (the project's default). Luigi also
sends nothing when stdout is a terminal unless ``[email] force_send`` is set.
"""

from __future__ import annotations

import configparser
import datetime as dt
import email
import email.policy
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import luigi.notifications
import pytest

from tasks import ValidatedTrips

ROOT = Path(__file__).resolve().parents[2]
JANUARY = dt.date(2021, 1, 1)
TASK = "ValidatedTrips(color=green, month=2021-01)"
# luigi's [smtp] parameters default to None but are declared as strings
pytestmark = pytest.mark.filterwarnings("ignore:Parameter .* is not of type string:UserWarning")


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    data: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def body(self) -> str:
        """The decoded text of every text part (luigi sends utf-8 text, base64-encoded)."""
        return "\n".join(part.get_content() for part in self.message.walk() if part.get_content_maintype() == "text")


@dataclass
class SMTPCatcher:
    host: str
    port: int
    mails: list[Mail] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


#: the catcher's answer to each command it accepts without more to do
REPLIES = {verb: "250 OK" for verb in ("MAIL", "RCPT", "RSET", "NOOP")} | {"EHLO": "250 catcher", "HELO": "250 catcher"}


class SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough of RFC 5321 for smtplib: no extensions, no TLS, no authentication."""

    timeout = 30  # a client that stops talking does not keep the thread forever

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode("ascii") + b"\r\n")
        self.wfile.flush()

    def receive_data(self, catcher: SMTPCatcher, sender: str, recipients: list[str]) -> None:
        self.reply("354 end data with <CR><LF>.<CR><LF>")
        lines: list[bytes] = []
        while True:
            chunk = self.rfile.readline()
            if not chunk or chunk == b".\r\n":
                break
            lines.append(chunk[1:] if chunk.startswith(b"..") else chunk)  # undo dot-stuffing
        with catcher.lock:
            catcher.mails.append(Mail(sender, recipients, b"".join(lines)))
        self.reply("250 OK queued")

    def handle(self) -> None:
        catcher: SMTPCatcher = self.server.catcher  # type: ignore[attr-defined]
        with catcher.lock:
            catcher.connections += 1
        self.reply("220 catcher ESMTP test server")
        sender, recipients = "", []
        while True:
            raw = self.rfile.readline()
            if not raw:
                return
            line = raw.decode("ascii", errors="replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            with catcher.lock:
                catcher.commands.append(verb)
            if verb == "MAIL":
                sender, recipients = line.split(":", 1)[1].strip().strip("<>"), []
            elif verb == "RCPT":
                recipients.append(line.split(":", 1)[1].strip().strip("<>"))
            elif verb == "DATA":
                self.receive_data(catcher, sender, recipients)
                continue
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            self.reply(REPLIES.get(verb, "502 command not implemented"))


@pytest.fixture
def smtp_catcher() -> Iterator[SMTPCatcher]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SMTPHandler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    server.catcher = catcher = SMTPCatcher(host, port)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield catcher
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def fail_january(pipeline_env, run_tasks):
    """Run ValidatedTrips on a raw file that is not parquet: run() raises, the task fails."""
    (pipeline_env.raw_dir / "green_tripdata_2021-01.parquet").write_bytes(b"this is not a parquet file\n")
    result = run_tasks([ValidatedTrips(month=JANUARY)])
    assert not result.ok
    assert set(result.failed) == {TASK}
    return result


def point_smtp_at(config, catcher: SMTPCatcher) -> None:
    config.set("smtp", "host", catcher.host)
    config.set("smtp", "port", str(catcher.port))
    config.set("smtp", "timeout", "5")


def test_a_failed_task_mails_its_traceback(pipeline_env, run_tasks, config, smtp_catcher):
    config.set("email", "receiver", "ops@example.com")
    config.set("email", "sender", "luigi@example.com")
    config.set("email", "method", "smtp")
    config.set("email", "force_send", "true")  # pytest's stdout is no terminal, but a developer's may be
    point_smtp_at(config, smtp_catcher)

    fail_january(pipeline_env, run_tasks)

    assert "STARTTLS" not in smtp_catcher.commands
    failed = [m for m in smtp_catcher.mails if m.subject.startswith(f"Luigi: {TASK} FAILED. Host: ")]
    assert len(failed) == 1, [m.subject for m in smtp_catcher.mails]
    mail = failed[0]
    assert mail.sender == "luigi@example.com"
    assert mail.recipients == ["ops@example.com"]
    assert mail.message["From"] == "luigi@example.com"
    assert mail.message["To"] == "ops@example.com"
    body = mail.body
    assert "A task failed when running" in body
    assert "Name: ValidatedTrips" in body
    assert "month: 2021-01" in body
    assert "Traceback (most recent call last)" in body
    assert "green_tripdata_2021-01.parquet: not a readable parquet file" in body

    # retry_count is 1 in the tests' config: the (local) scheduler disables the task at once, and says so
    # in a second mail; there is no other
    task_id = ValidatedTrips(month=JANUARY).task_id
    others = [m.subject for m in smtp_catcher.mails if m is not mail]
    assert others == [f"Luigi Scheduler: DISABLED {task_id} due to excessive failures"]


def test_every_failed_attempt_is_mailed(pipeline_env, run_tasks, config, smtp_catcher):
    # with retries (the project's default is 3, 30 s apart) a task that keeps failing mails each attempt
    config.set("email", "receiver", "ops@example.com")
    config.set("email", "force_send", "true")
    config.set("scheduler", "retry_count", "2")
    config.set("scheduler", "retry_delay", "0.1")
    point_smtp_at(config, smtp_catcher)

    fail_january(pipeline_env, run_tasks)

    subjects = sorted(m.subject.split(" Host: ")[0] for m in smtp_catcher.mails)
    task_id = ValidatedTrips(month=JANUARY).task_id
    assert subjects == [
        f"Luigi Scheduler: DISABLED {task_id} due to excessive failures",
        f"Luigi: {TASK} FAILED.",
        f"Luigi: {TASK} FAILED.",
    ]


def test_no_receiver_no_mail(pipeline_env, run_tasks, config, smtp_catcher):
    # everything else is set up for mail, as on a machine where only the receiver was left out
    config.set("email", "force_send", "true")
    point_smtp_at(config, smtp_catcher)
    project = configparser.ConfigParser()
    project.read(ROOT / "luigi.cfg")
    assert not project.has_option("email", "receiver") and not project.has_option("core", "error-email")
    assert luigi.notifications.email().receiver == ""

    fail_january(pipeline_env, run_tasks)

    assert smtp_catcher.connections == 0
    assert smtp_catcher.mails == []
