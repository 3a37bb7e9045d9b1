#!/usr/bin/env python3
"""Test SMTP server for herald (started by scripts/smtp.sh, not by hand).

One process, one asyncio loop, three aiosmtpd listeners on one host:

  starttls  cleartext greeting, STARTTLS required before anything but
            EHLO/NOOP/QUIT (530 otherwise); AUTH PLAIN + LOGIN offered only
            after STARTTLS; MAIL/RCPT/DATA refused (530) until authenticated
  smtps     implicit TLS from the first byte; AUTH PLAIN + LOGIN; MAIL/RCPT/
            DATA refused (530) until authenticated
  plain     cleartext relay: no STARTTLS, no AUTH offered (AUTH -> 538),
            mail accepted from anyone

Every accepted message is written byte-exact (aiosmtpd's
envelope.original_content: the DATA bytes after dot-unstuffing, CRLF kept,
nothing added) to <out>/<server>/<id>.eml, then its envelope to
<out>/<server>/<id>.json. Both are written to a temp dir first and renamed
into place, .eml before .json: once a .json is visible, both files are
complete. <id> is "<UTC time>-<sequence>", so names sort in delivery order.

Python is here only because aiosmtpd is the SMTP server; this file is the
glue around it. Logs go to --log-file.
"""

import argparse
import asyncio
import datetime
import hashlib
import hmac
import itertools
import json
import logging
import os
import signal
import ssl
import sys
import warnings
from typing import NamedTuple, Optional

from aiosmtpd import __version__ as AIOSMTPD_VERSION
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

log = logging.getLogger("herald.smtp")


class AuthRecord(NamedTuple):
    """What session.auth_data holds after a successful AUTH. `login` is the
    attribute aiosmtpd copies into the (deprecated) session.login_data."""

    mechanism: str
    login: bytes


class Authenticator:
    """aiosmtpd `authenticator` callback: one fixed user. A wrong user or
    password returns success=False, handled=False, which aiosmtpd answers with
    its default `535 5.7.8 Authentication credentials invalid`."""

    def __init__(self, username: str, password: str):
        self.username = username.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        ok = hmac.compare_digest(auth_data.login, self.username) and hmac.compare_digest(
            auth_data.password, self.password
        )
        login = auth_data.login.decode("utf-8", "replace")
        if not ok:
            log.info("%r AUTH %s failed for login %r", session.peer, mechanism, login)
            return AuthResult(success=False, handled=False)
        log.info("%r AUTH %s ok for login %r", session.peer, mechanism, login)
        return AuthResult(success=True, auth_data=AuthRecord(mechanism, auth_data.login))


def _text(s: Optional[str]) -> Optional[str]:
    """aiosmtpd decodes SMTP arguments with surrogateescape (SMTPUTF8 on):
    map undecodable bytes to U+FFFD so the JSON is valid UTF-8."""
    if s is None:
        return None
    return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class Spool:
    """Names and writes the delivered messages (shared by the 3 servers)."""

    def __init__(self, out_dir: str, tmp_dir: str):
        self.out_dir = out_dir
        self.tmp_dir = tmp_dir
        self.seq = itertools.count(1)

    def _put(self, data: bytes, final: str, tmp_name: str) -> None:
        # Temp dir on the same filesystem (sibling of out_dir), not inside the
        # per-server dirs, so `smtp.sh clear` never sees half-written files.
        os.makedirs(self.tmp_dir, exist_ok=True)
        tmp = os.path.join(self.tmp_dir, tmp_name)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, final)

    def deliver(self, server_name: str, server: SMTP, session, envelope) -> str:
        now = datetime.datetime.now(datetime.timezone.utc)
        seq = next(self.seq)
        msg_id = f"{now:%Y%m%dT%H%M%S.%f}Z-{seq:06d}"
        target = os.path.join(self.out_dir, server_name)
        os.makedirs(target, exist_ok=True)
        content: bytes = envelope.original_content
        server.herald_messages += 1

        ssl_obj = server.transport.get_extra_info("ssl_object") if server.transport else None
        auth = session.auth_data if session.authenticated else None
        peer = session.peer
        meta = {
            "id": msg_id,
            "server": server_name,
            "message_file": msg_id + ".eml",
            "received_at": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "mail_from": _text(envelope.mail_from),
            "mail_options": [_text(o) for o in envelope.mail_options],
            "rcpt_tos": [_text(r) for r in envelope.rcpt_tos],
            "rcpt_options": [_text(o) for o in envelope.rcpt_options],
            "smtp_utf8": bool(envelope.smtp_utf8),
            "helo": _text(session.host_name),
            "extended_smtp": bool(session.extended_smtp),
            "peer": f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
            "connection": server.herald_connection,
            "connection_message": server.herald_messages,
            "tls": ssl_obj is not None,
            "tls_mode": server.herald_tls_mode if ssl_obj is not None else None,
            "tls_version": ssl_obj.version() if ssl_obj is not None else None,
            "tls_cipher": ssl_obj.cipher()[0] if ssl_obj is not None else None,
            "authenticated": bool(session.authenticated),
            "auth_mechanism": auth.mechanism if isinstance(auth, AuthRecord) else None,
            "auth_login": auth.login.decode("utf-8", "replace") if isinstance(auth, AuthRecord) else None,
        }
        pid = os.getpid()
        self._put(content, os.path.join(target, msg_id + ".eml"), f"{server_name}-{msg_id}-{pid}.eml.tmp")
        js = json.dumps(meta, ensure_ascii=False, indent=2) + "\n"
        self._put(js.encode("utf-8"), os.path.join(target, msg_id + ".json"), f"{server_name}-{msg_id}-{pid}.json.tmp")
        return msg_id


class Handler:
    def __init__(self, name: str, spool: Spool):
        self.name = name
        self.spool = spool

    async def handle_DATA(self, server, session, envelope):
        try:
            msg_id = self.spool.deliver(self.name, server, session, envelope)
        except Exception:
            log.exception("[%s] could not store a message", self.name)
            return "451 4.3.0 Test server could not store the message"
        log.info(
            "[%s] stored %s: %d bytes from %r to %r (auth %s)",
            self.name, msg_id, len(envelope.original_content), envelope.mail_from, envelope.rcpt_tos,
            session.auth_data.mechanism if isinstance(session.auth_data, AuthRecord) else "none",
        )
        return "250 2.0.0 OK queued as " + msg_id


class _QuietFilter(logging.Filter):
    """Drops two aiosmtpd warnings that fire on every connection/AUTH and say
    nothing here: the implicit-TLS server sets auth_require_tls=False (its
    listener is TLS-only, yet aiosmtpd can't tell), and aiosmtpd itself sets
    the deprecated session.login_data on each successful AUTH."""

    def filter(self, record):
        msg = record.getMessage()
        return not (
            msg.startswith("auth_required == True but auth_require_tls == False")
            or msg.startswith("Session.login_data is deprecated")
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--starttls-port", type=int, required=True)
    p.add_argument("--smtps-port", type=int, required=True)
    p.add_argument("--plain-port", type=int, required=True)
    p.add_argument("--cert", required=True, help="server certificate (PEM)")
    p.add_argument("--key", required=True, help="server private key (PEM)")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--tmp-dir", required=True, help="same filesystem as --out-dir")
    p.add_argument("--log-file", required=True)
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--hostname", default="localhost", help="name in the greeting/EHLO reply")
    p.add_argument("--smtputf8", type=int, choices=(0, 1), default=1, help="advertise SMTPUTF8")
    p.add_argument("--data-size-limit", type=int, default=32 * 1024 * 1024,
                   help="max message bytes (SIZE), 0 = unlimited")
    p.add_argument("--timeout", type=float, default=300, help="idle timeout per connection, seconds")
    a = p.parse_args()

    logging.basicConfig(
        filename=a.log_file,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    for h in logging.getLogger().handlers:
        h.addFilter(_QuietFilter())
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # server side, no client certs
    tls.load_cert_chain(a.cert, a.key)

    spool = Spool(a.out_dir, a.tmp_dir)
    auth = Authenticator(a.username, a.password)
    common = dict(
        hostname=a.hostname,
        enable_SMTPUTF8=bool(a.smtputf8),
        data_size_limit=a.data_size_limit or None,
        timeout=a.timeout,
    )
    servers = {
        # name: (port, listener TLS, SMTP kwargs, tls_mode)
        "starttls": (a.starttls_port, None, dict(
            tls_context=tls, require_starttls=True, auth_required=True, auth_require_tls=True,
            authenticator=auth), "starttls"),
        "smtps": (a.smtps_port, tls, dict(
            # The whole connection is TLS, but aiosmtpd only knows about TLS
            # it negotiated itself (STARTTLS): with auth_require_tls=True it
            # would never offer AUTH here.
            auth_required=True, auth_require_tls=False, authenticator=auth), "implicit"),
        "plain": (a.plain_port, None, dict(
            # No tls_context: no STARTTLS. auth_require_tls=True without TLS:
            # EHLO offers no AUTH and an AUTH command gets 538.
            auth_required=False, auth_require_tls=True), None),
    }

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    conn_ids = itertools.count(1)

    def factory(name, kwargs, tls_mode):
        handler = Handler(name, spool)

        def make():
            smtp = SMTP(handler, loop=loop, **common, **kwargs)
            smtp.herald_connection = next(conn_ids)
            smtp.herald_messages = 0
            smtp.herald_tls_mode = tls_mode
            return smtp

        return make

    listeners = []
    for name, (port, listen_tls, kwargs, tls_mode) in servers.items():
        srv = loop.run_until_complete(
            loop.create_server(factory(name, kwargs, tls_mode), host=a.host, port=port, ssl=listen_tls,
                               reuse_address=True)
        )
        listeners.append(srv)
        log.info("[%s] listening on %s:%d", name, a.host, port)
    log.info("aiosmtpd %s on Python %s, pid %d, out %s", AIOSMTPD_VERSION, sys.version.split()[0],
             os.getpid(), a.out_dir)

    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: stop.done() or stop.set_result(s))
    sig = loop.run_until_complete(stop)
    log.info("signal %d, shutting down", sig)
    for srv in listeners:
        srv.close()
    # Cancel the open sessions (each closes its transport on cancel). Not
    # Server.wait_closed(): from Python 3.12 on it waits for every client
    # connection to go away, and an idle client may hold one for minutes.
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=5))
    loop.run_until_complete(asyncio.sleep(0))  # let the transports finish closing
    loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
