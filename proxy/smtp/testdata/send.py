#!/usr/bin/env python3
"""Send one message through an SMTP submission server with smtplib.

The password is read from the environment variable LEGATE_TEST_PASSWORD,
never from argv. The message is read from --message (a file, sent as is).
Exit status: 0 sent; 2 an SMTP error, whose code and text are printed as
"SMTPERROR <code> <text>" on stdout; 1 anything else.
"""
import argparse
import os
import smtplib
import ssl
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["starttls", "implicit", "plain"], default="starttls")
    p.add_argument("--cafile", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--mech", choices=["PLAIN", "LOGIN"], default="PLAIN")
    p.add_argument("--mail-from", required=True)
    p.add_argument("--rcpt", action="append", required=True)
    p.add_argument("--message", required=True)
    p.add_argument("--mail-option", action="append", default=[])
    a = p.parse_args()
    password = os.environ["LEGATE_TEST_PASSWORD"]

    ctx = ssl.create_default_context(cafile=a.cafile)
    ctx.check_hostname = True
    try:
        if a.mode == "implicit":
            s = smtplib.SMTP_SSL(a.host, a.port, context=ctx, timeout=120)
        else:
            s = smtplib.SMTP(a.host, a.port, timeout=120)
        with s:
            s.ehlo("py-client.test")
            if a.mode == "starttls":
                s.starttls(context=ctx)
                s.ehlo("py-client.test")
            s.user, s.password = a.user, password
            mech = "auth_" + a.mech.lower()
            code, resp = s.auth(a.mech, getattr(s, mech), initial_response_ok=(a.mech == "PLAIN"))
            print("AUTH", code, resp.decode(errors="replace"))
            with open(a.message, "rb") as f:
                msg = f.read()
            refused = s.sendmail(a.mail_from, a.rcpt, msg, mail_options=a.mail_option)
            if refused:
                print("REFUSED", refused)
                return 2
            print("SENT")
    except smtplib.SMTPResponseException as e:
        print("SMTPERROR", e.smtp_code, e.smtp_error.decode(errors="replace"))
        return 2
    except smtplib.SMTPRecipientsRefused as e:
        for rcpt, (code, text) in e.recipients.items():
            print("SMTPERROR", code, text.decode(errors="replace"))
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
