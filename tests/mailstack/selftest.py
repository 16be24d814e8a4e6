#!/usr/bin/env python3
"""End-to-end check of a running mailstack (see start.sh), standard library only.

Usage: selftest.py DIR   (DIR/env written by start.sh; the stack must be up)

Prints one PASS/FAIL line per check and exits 1 if any check failed.
"""
import imaplib
import os
import re
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import uuid
from datetime import datetime
from email.message import EmailMessage

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.path.abspath(sys.argv[1])


def load_env(path):
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


E = load_env(os.path.join(DIR, "env"))
HOST = E["MAILSTACK_HOST"]
PW = E["MAILSTACK_PASSWORD"]
IMAP_PORT, IMAPS_PORT = int(E["IMAP_PORT"]), int(E["IMAPS_PORT"])
SMTP_PORT, SMTPS_PORT = int(E["SMTP_PORT"]), int(E["SMTPS_PORT"])
SUBMISSION_PORT = int(E["SUBMISSION_PORT"])
INTAKE = "intake@example.test"
UNIT1 = "unit1@example.test"
RUN = uuid.uuid4().hex[:8]

failures = []
T0 = time.monotonic()


def report(ok, name, detail=""):
    line = "%s: %s%s" % ("PASS" if ok else "FAIL", name, (" — " + detail) if detail else "")
    print(line, flush=True)
    if not ok:
        failures.append(name)
    return ok


def check(name, fn):
    """Run fn(); PASS if it returns without raising (its str result is the detail)."""
    t = time.monotonic()
    try:
        detail = fn()
    except Exception as e:  # noqa: BLE001 - report everything
        return report(False, name, "%s: %s" % (type(e).__name__, e))
    took = "%.2fs" % (time.monotonic() - t)
    return report(True, name, "%s (%s)" % (detail, took) if detail else took)


def tls_ctx():
    # Verify against the stack's CA, with hostname (IP SAN) checking on.
    return ssl.create_default_context(cafile=E["CA_CERT"])


def helper(script):
    r = subprocess.run([os.path.join(HERE, script), DIR], capture_output=True, text=True, timeout=90)
    if r.returncode != 0:
        raise RuntimeError("%s exited %d: %s %s" % (script, r.returncode, r.stdout, r.stderr))


def port_open(port):
    try:
        socket.create_connection((HOST, port), timeout=2).close()
        return True
    except OSError:
        return False


def make_msg(to, subject, sender="others@example.test", body="hello"):
    m = EmailMessage()
    m["From"] = sender
    m["To"] = to
    m["Subject"] = subject
    m["Message-ID"] = "<%s@mailstack.test>" % uuid.uuid4().hex
    m.set_content(body)
    return m


def imap_login(user, tls=False):
    if tls:
        c = imaplib.IMAP4_SSL(HOST, IMAPS_PORT, ssl_context=tls_ctx(), timeout=10)
    else:
        c = imaplib.IMAP4(HOST, IMAP_PORT, timeout=10)
    c.login(user, PW)
    return c


def wait_subject(user, subject, timeout=15.0, tls=False):
    """Poll user's INBOX until a message with this subject is there."""
    c = imap_login(user, tls)
    try:
        deadline = time.monotonic() + timeout
        while True:
            c.select("INBOX")
            typ, data = c.search(None, "SUBJECT", '"%s"' % subject)
            if typ == "OK" and data[0].split():
                return
            if time.monotonic() > deadline:
                raise TimeoutError("no message %r in %s INBOX after %ss" % (subject, user, timeout))
            time.sleep(0.1)
    finally:
        try:
            c.logout()
        except Exception:
            pass


def send_plain(to, subject):
    with smtplib.SMTP(HOST, SMTP_PORT, timeout=10) as s:
        s.ehlo("selftest.example.test")
        feats = s.esmtp_features
        if "auth" not in feats or "starttls" not in feats:
            raise AssertionError("EHLO on %d lacks AUTH/STARTTLS: %r" % (SMTP_PORT, feats))
        refused = s.send_message(make_msg(to, subject))
        if refused:
            raise AssertionError("refused %r" % refused)


# ---------------------------------------------------------------- checks ----
def t_smtp_plain():
    send_plain(UNIT1, "plain-%s" % RUN)
    return "250 on %d (EHLO offers AUTH, STARTTLS)" % SMTP_PORT


def t_smtps_auth():
    with smtplib.SMTP_SSL(HOST, SMTPS_PORT, context=tls_ctx(), timeout=10) as s:
        s.login(INTAKE, PW)
        s.send_message(make_msg(UNIT1, "smtps-%s" % RUN, sender=INTAKE))
    return "TLS verified + AUTH %s on %d" % (INTAKE, SMTPS_PORT)


def t_smtps_requires_auth():
    with smtplib.SMTP_SSL(HOST, SMTPS_PORT, context=tls_ctx(), timeout=10) as s:
        try:
            s.send_message(make_msg(UNIT1, "noauth-%s" % RUN))
        except smtplib.SMTPRecipientsRefused as e:
            code = list(e.recipients.values())[0][0]
            return "unauthenticated RCPT refused with %d" % code
    raise AssertionError("unauthenticated mail accepted on the submission port")


def t_submission_starttls():
    with smtplib.SMTP(HOST, SUBMISSION_PORT, timeout=10) as s:
        s.ehlo("selftest.example.test")
        if "auth" in s.esmtp_features:
            raise AssertionError("AUTH offered before STARTTLS")
        s.starttls(context=tls_ctx())
        s.ehlo("selftest.example.test")
        s.login(INTAKE, PW)
        s.send_message(make_msg(UNIT1, "starttls-%s" % RUN, sender=INTAKE))
    return "STARTTLS + AUTH on %d" % SUBMISSION_PORT


def t_bad_password_fast():
    t = time.monotonic()
    with smtplib.SMTP(HOST, SMTP_PORT, timeout=10) as s:
        s.ehlo("x")
        try:
            s.login(INTAKE, "wrong")
            raise AssertionError("wrong SMTP password accepted")
        except smtplib.SMTPAuthenticationError:
            pass
    c = imaplib.IMAP4(HOST, IMAP_PORT, timeout=10)
    try:
        c.login(INTAKE, "wrong")
        raise AssertionError("wrong IMAP password accepted")
    except imaplib.IMAP4.error:
        pass
    c.shutdown()
    imap_login(INTAKE).logout()  # must not be slowed by an auth penalty
    took = time.monotonic() - t
    if took > 2.0:
        raise AssertionError("failed logins slowed things down: %.1fs" % took)
    return "rejected, and the next login was not delayed"


def t_unknown_rcpt_and_relay():
    with smtplib.SMTP(HOST, SMTP_PORT, timeout=10) as s:
        s.ehlo("x")
        out = []
        for rcpt in ("nobody-here@example.test", "someone@elsewhere.invalid"):
            s.mail("others@example.test")
            code, _ = s.rcpt(rcpt)
            s.rset()
            if code < 500:
                raise AssertionError("RCPT %s got %d, expected 5xx" % (rcpt, code))
            out.append("%s→%d" % (rcpt.split("@")[1] if "elsewhere" in rcpt else "unknown user", code))
        return ", ".join(out)


def t_delivered_plain_imap():
    for subj in ("plain-%s" % RUN, "smtps-%s" % RUN, "starttls-%s" % RUN):
        wait_subject(UNIT1, subj)
    return "3 messages in %s INBOX via IMAP %d" % (UNIT1, IMAP_PORT)


def t_delivered_imaps():
    wait_subject(UNIT1, "plain-%s" % RUN, tls=True)
    return "IMAP4_SSL %d (cert verified for 127.0.0.1)" % IMAPS_PORT


APPEND_SUBJ = "append-%s" % RUN


def t_capability():
    c = imap_login(INTAKE)
    try:
        typ, data = c.capability()  # post-login list (MOVE is not shown before login)
        caps = set(data[0].decode().upper().split())
        missing = {"IDLE", "MOVE", "UIDPLUS"} - caps
        if missing:
            raise AssertionError("missing %s in %s" % (missing, sorted(caps)))
        typ, data = c.list()
        names = b" ".join(data)
        if b"Processed" not in names:
            raise AssertionError("Processed not auto-created: %r" % data)
        return "IDLE, MOVE, UIDPLUS; Processed exists"
    finally:
        c.logout()


def t_append_internaldate():
    c = imap_login(INTAKE)
    try:
        msg = make_msg(INTAKE, APPEND_SUBJ, sender="unit2@example.test").as_bytes()
        date = '"14-Mar-2020 09:30:00 +0800"'
        typ, data = c.append("INBOX", None, date, msg)
        if typ != "OK":
            raise AssertionError("APPEND %s %r" % (typ, data))
        c.select("INBOX")
        typ, data = c.search(None, "SUBJECT", '"%s"' % APPEND_SUBJ)
        num = data[0].split()[-1]
        typ, data = c.fetch(num, "(INTERNALDATE)")
        got = re.search(rb'INTERNALDATE "([^"]+)"', data[0]).group(1).decode()
        # Maildir keeps the instant (file mtime), not the zone: Dovecot
        # answers in its own zone. Compare instants.
        fmt = "%d-%b-%Y %H:%M:%S %z"
        want = datetime.strptime("14-Mar-2020 09:30:00 +0800", fmt)
        if datetime.strptime(got, fmt) != want:
            raise AssertionError("INTERNALDATE %r != %s" % (got, want))
        return "INTERNALDATE kept: sent 14-Mar-2020 09:30:00 +0800, got %s" % got
    finally:
        c.logout()


def t_move_processed():
    c = imap_login(INTAKE)
    try:
        c.select("INBOX")
        typ, data = c.uid("SEARCH", None, "SUBJECT", '"%s"' % APPEND_SUBJ)
        uid = data[0].split()[-1].decode()
        typ, data = c.uid("MOVE", uid, "Processed")
        if typ != "OK":
            raise AssertionError("UID MOVE %s %r" % (typ, data))
        c.select("INBOX")
        typ, data = c.search(None, "SUBJECT", '"%s"' % APPEND_SUBJ)
        if data[0].split():
            raise AssertionError("still in INBOX after MOVE")
        c.select("Processed")
        typ, data = c.search(None, "SUBJECT", '"%s"' % APPEND_SUBJ)
        if not data[0].split():
            raise AssertionError("not in Processed after MOVE")
        return "UID MOVE %s INBOX → Processed" % uid
    finally:
        c.logout()


def t_idle_push():
    c = imap_login(INTAKE)
    try:
        c.select("INBOX")
        tag = c._new_tag()
        c.send(tag + b" IDLE\r\n")
        line = c.readline()
        if not line.startswith(b"+"):
            raise AssertionError("IDLE answered %r" % line)
        subj = "idle-%s" % RUN
        t = time.monotonic()
        send_plain(INTAKE, subj)
        c.sock.settimeout(10)
        while True:
            line = c.readline()
            if not line:
                raise AssertionError("connection closed during IDLE")
            if re.match(rb"\* \d+ EXISTS", line):
                break
        took = time.monotonic() - t
        c.send(b"DONE\r\n")
        while True:
            line = c.readline()
            if line.startswith(tag):
                if b" OK" not in line:
                    raise AssertionError("IDLE ended with %r" % line)
                break
        return "EXISTS pushed %.2fs after the SMTP send" % took
    finally:
        c.logout()


def t_restart_dovecot():
    c = imap_login(INTAKE)
    c.select("INBOX")
    helper("restart-dovecot.sh")
    try:  # the old connection must be gone
        c.noop()
        dropped = False
    except Exception:
        dropped = True
    if not dropped:
        raise AssertionError("old IMAP session survived the restart")
    for tls in (False, True):
        c = imap_login(INTAKE, tls)
        c.select("Processed")
        typ, data = c.search(None, "SUBJECT", '"%s"' % APPEND_SUBJ)
        c.logout()
        if not data[0].split():
            raise AssertionError("Processed lost its message over the restart")
    return "old session dropped; login again on %d and %d, mail kept" % (IMAP_PORT, IMAPS_PORT)


def t_retry_when_dovecot_down():
    helper("stop-dovecot.sh")
    subj = "retry-%s" % RUN
    send_plain(UNIT1, subj)  # Postfix queues it; LMTP is down
    time.sleep(1.0)
    t = time.monotonic()
    helper("start-dovecot.sh")
    wait_subject(UNIT1, subj, timeout=20)
    return "queued while Dovecot was down, delivered %.1fs after it came back" % (time.monotonic() - t)


def t_stop_postfix():
    helper("stop-postfix.sh")
    still = [p for p in (SMTP_PORT, SMTPS_PORT, SUBMISSION_PORT) if port_open(p)]
    if still:
        raise AssertionError("ports still open: %s" % still)
    try:
        smtplib.SMTP(HOST, SMTP_PORT, timeout=3)
        raise AssertionError("SMTP connect succeeded while Postfix is stopped")
    except ConnectionRefusedError:
        pass
    return "ports %d/%d/%d closed, connect refused" % (SMTP_PORT, SMTPS_PORT, SUBMISSION_PORT)


def t_start_postfix_send():
    helper("start-postfix.sh")
    subj = "again-%s" % RUN
    send_plain(UNIT1, subj)
    with smtplib.SMTP_SSL(HOST, SMTPS_PORT, context=tls_ctx(), timeout=10) as s:
        s.login(INTAKE, PW)
        s.send_message(make_msg(UNIT1, subj + "-tls", sender=INTAKE))
    wait_subject(UNIT1, subj)
    wait_subject(UNIT1, subj + "-tls")
    return "sent and delivered on %d and %d after the restart" % (SMTP_PORT, SMTPS_PORT)


CHECKS = [
    ("SMTP plain %d to unit1" % SMTP_PORT, t_smtp_plain),
    ("SMTPS %d implicit TLS + AUTH as intake" % SMTPS_PORT, t_smtps_auth),
    ("SMTPS %d refuses unauthenticated mail" % SMTPS_PORT, t_smtps_requires_auth),
    ("submission %d STARTTLS + AUTH" % SUBMISSION_PORT, t_submission_starttls),
    ("SMTP refuses unknown user and other domains", t_unknown_rcpt_and_relay),
    ("wrong passwords rejected, no auth penalty", t_bad_password_fast),
    ("delivered to unit1 INBOX (IMAP %d)" % IMAP_PORT, t_delivered_plain_imap),
    ("IMAPS %d login + delivered" % IMAPS_PORT, t_delivered_imaps),
    ("CAPABILITY has IDLE and MOVE; Processed auto-created", t_capability),
    ("APPEND with INTERNALDATE to intake INBOX", t_append_internaldate),
    ("MOVE to Processed", t_move_processed),
    ("IDLE pushes new mail", t_idle_push),
    ("restart Dovecot, log in again", t_restart_dovecot),
    ("Postfix retries quickly when LMTP was down", t_retry_when_dovecot_down),
    ("stop Postfix, ports closed", t_stop_postfix),
    ("start Postfix again and send", t_start_postfix_send),
]

for name, fn in CHECKS:
    check(name, fn)

print("selftest checks: %.1fs" % (time.monotonic() - T0))
sys.exit(1 if failures else 0)
