#!/usr/bin/env python3
"""IMAP client driven by the end-to-end tests through Legate.

Everything comes from the environment (secrets never on argv):
  IMAP_HOST, IMAP_PORT  where Legate listens
  IMAP_TLS              "starttls" or "imaps"
  IMAP_CAFILE           CA to verify Legate's certificate
  IMAP_USER, IMAP_PASS  login name and app password
  IMAP_AUTH             "login" (LOGIN) or "plain" (AUTHENTICATE PLAIN)
  IMAP_ACTION           "login"   : log in, print "OK" or "NO <text>", log out
                        "session" : SELECT, APPEND a 10 MB message, FETCH it
                                    back and compare, then IDLE: print
                                    "IDLING" and wait for an EXISTS
                        "revoke"  : log in, IDLE, print "IDLING", then read
                                    until the server closes; print what came
Output lines are for the Go test to check; exit status 0 means the script
itself ran to the end.
"""
import imaplib
import os
import socket
import ssl
import sys
import time


def out(*args):
    print(*args, flush=True)


def connect():
    host, port = os.environ["IMAP_HOST"], int(os.environ["IMAP_PORT"])
    ctx = ssl.create_default_context(cafile=os.environ["IMAP_CAFILE"])
    if os.environ["IMAP_TLS"] == "imaps":
        m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=30)
    else:
        m = imaplib.IMAP4(host, port, timeout=30)
        m.starttls(ssl_context=ctx)
    return m


def login(m):
    user, pw = os.environ["IMAP_USER"], os.environ["IMAP_PASS"]
    if os.environ.get("IMAP_AUTH") == "plain":
        return m.authenticate("PLAIN", lambda _: ("\0%s\0%s" % (user, pw)).encode())
    return m.login(user, pw)


def idle_start(m):
    tag = m._new_tag()
    m.send(tag + b" IDLE\r\n")
    line = m.readline()
    if not line.startswith(b"+"):
        raise SystemExit("IDLE refused: %r" % line)
    out("IDLING")
    return tag


def session(m):
    typ, _ = m.select("INBOX")
    assert typ == "OK", typ
    line = b"0123456789" * 7 + b"abcdef\r\n"  # 78 bytes
    body = line * (10 * 1024 * 1024 // len(line))
    msg = (b"From: alice@example.com\r\nTo: alice@example.com\r\n"
           b"Subject: big %d\r\nMessage-ID: <big-%d@example.com>\r\n\r\n" % (os.getpid(), os.getpid())) + body
    typ, data = m.append("INBOX", None, None, msg)
    assert typ == "OK", (typ, data)
    out("APPENDED %d" % len(msg))
    typ, data = m.uid("SEARCH", None, "HEADER", "Message-ID", "<big-%d@example.com>" % os.getpid())
    assert typ == "OK" and data[0], (typ, data)
    uid = data[0].split()[-1]
    typ, data = m.uid("FETCH", uid, "(BODY.PEEK[])")
    assert typ == "OK", typ
    got = data[0][1]
    out("FETCHED %d identical=%s" % (len(got), got == msg))
    tag = idle_start(m)
    deadline = time.time() + 20
    while time.time() < deadline:
        line = m.readline()
        if not line:
            raise SystemExit("connection closed during IDLE")
        if b"EXISTS" in line:
            out("EXISTS " + line.decode().strip())
            break
    m.send(b"DONE\r\n")
    while True:
        line = m.readline()
        if line.startswith(tag):
            out("IDLE-END " + line.decode().strip())
            break
    m.logout()


def revoke(m):
    m.select("INBOX")
    idle_start(m)
    m.sock.settimeout(10)
    start = time.time()
    try:
        while True:
            line = m.readline()
            if not line:
                break
            out("LINE " + line.decode(errors="replace").strip())
    except (socket.timeout, OSError) as e:
        out("ERROR %s" % e)
    out("CLOSED after %.3f" % (time.time() - start))


def main():
    action = os.environ.get("IMAP_ACTION", "login")
    m = connect()
    try:
        login(m)
    except imaplib.IMAP4.error as e:
        msg = e.args[0]
        if isinstance(msg, bytes):
            msg = msg.decode()
        out("NO " + str(msg))
        return
    out("OK " + " ".join(c for c in m.capabilities))
    if action == "session":
        session(m)
    elif action == "revoke":
        revoke(m)
    else:
        m.logout()


if __name__ == "__main__":
    main()
