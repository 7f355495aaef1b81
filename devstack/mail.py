"""Mail on loopback: the app's SMTP receiver (`manage.py receive_mail`) as a process of
its own, and a sink that catches what the workers mail out (an aiosmtpd server on a
thread of the caller's process), so a test can talk SMTP to the first and read the
second.
"""

import email
import smtplib
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

from aiosmtpd.controller import Controller

from .processes import REPO_ROOT, STARTUP_TIMEOUT, _launch, _still_running, free_port, stop_process
from .waiting import StackError, tail, wait_until


@dataclass
class MailReceiver:
    """`manage.py receive_mail` on a free loopback port; `stop()` and `start()` again
    keep its port, as a restart does."""

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = field(default=None, repr=False)

    def start(self, timeout: float = STARTUP_TIMEOUT) -> "MailReceiver":
        command = [sys.executable, "manage.py", "receive_mail", "--port", str(self.port)]
        process = self.process = _launch(command, self.log, self.env)
        wait_until(
            lambda: _still_running(process, "receive_mail", self.log) and self.answers(),
            timeout=timeout,
            what=lambda: f"receive_mail on port {self.port}\n{tail(self.log)}",
        )
        return self

    def answers(self) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=2) as client:
                return client.noop()[0] == 250
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.process)

    def send(
        self, message: EmailMessage, *, sender: str | None = None, to: list[str] | None = None
    ):
        """Hand one mail over like an MTA: smtplib's answer (refused recipients), or
        its SMTPException."""
        with smtplib.SMTP("127.0.0.1", self.port, timeout=30) as client:
            client.ehlo("mta.test")
            return client.send_message(message, from_addr=sender, to_addrs=to)


class _Catcher:
    def __init__(self, sink: "MailSink") -> None:
        self.sink = sink

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.content, policy=default_policy)
        with self.sink.changed:
            self.sink.received.append((envelope.mail_from, list(envelope.rcpt_tos), message))
            self.sink.changed.notify_all()
        return "250 OK"


class MailSink:
    """Catches the app's outgoing mail: `received` holds (MAIL FROM, RCPT TOs, message)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, list[str], EmailMessage]] = []
        self.changed = threading.Condition()
        self.port = free_port()
        self._controller = Controller(_Catcher(self), hostname="127.0.0.1", port=self.port)
        self._controller.start()

    def wait_for(self, count: int, timeout: float) -> list[EmailMessage]:
        """Until `count` mails arrived; the messages."""
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.received) >= count, timeout):
                subjects = [m["Subject"] for _, _, m in self.received]
                raise StackError(f"{count} mails awaited within {timeout}s; got {subjects}")
            return [message for _, _, message in self.received]

    def stop(self) -> None:
        self._controller.stop()


__all__ = ["REPO_ROOT", "MailReceiver", "MailSink"]
