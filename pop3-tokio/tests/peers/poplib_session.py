#!/usr/bin/env python3
"""Runs a scripted POP3 session with Python's poplib and prints every answer.

Each positional argument is one command, words separated by spaces:
  capa | stls | user NAME | pass PASSWORD | apop NAME SECRET | stat |
  list [N] | uidl [N] | top N LINES | retr N | dele N | rset | noop | quit |
  raw LINE (any one-line command) | rawlong LINE (any multi-line command)
Options (--host, --port, --tls, --cafile, --server-name) choose how to
connect; "stls" upgrades with the same --cafile and --server-name.

Records (see poplib_common.py for the framing), INDEX = the command's number
counted from 1: "greeting 0" first; then per command "cmd I" (its text),
"ok I" (the first answer line) or "err I" (the -ERR line, or the exception
text when the answer was not -ERR, e.g. a connection closed), and for
multi-line answers "lines I" (the lines joined with CRLF plus a final CRLF).
After an exception that is not a -ERR answer the session stops ("stop I").
"""

import poplib
import sys

from poplib_common import connect, joined, parser, record, tls_context


def run(pop, args, words):
    """Sends one command; returns (first line, lines or None)."""
    verb = words[0].lower()
    rest = words[1:]
    if verb == "capa":
        resp, lines, _ = pop._longcmd("CAPA")
        return resp, lines
    if verb == "stls":
        pop.host = args.server_name or args.host
        return pop.stls(context=tls_context(args)), None
    if verb == "user":
        return pop.user(" ".join(rest)), None
    if verb == "pass":
        return pop.pass_(" ".join(rest)), None
    if verb == "apop":
        return pop.apop(rest[0], " ".join(rest[1:])), None
    if verb in ("stat", "rset", "noop"):
        return pop._shortcmd(verb.upper()), None
    if verb in ("list", "uidl"):
        if rest:
            return pop._shortcmd("%s %s" % (verb.upper(), rest[0])), None
        resp, lines, _ = pop._longcmd(verb.upper())
        return resp, lines
    if verb == "top":
        resp, lines, _ = pop.top(rest[0], rest[1])
        return resp, lines
    if verb == "retr":
        resp, lines, _ = pop.retr(rest[0])
        return resp, lines
    if verb == "dele":
        return pop.dele(rest[0]), None
    if verb == "quit":
        return pop.quit(), None
    if verb == "raw":
        return pop._shortcmd(" ".join(rest)), None
    if verb == "rawlong":
        resp, lines, _ = pop._longcmd(" ".join(rest))
        return resp, lines
    raise SystemExit("unknown command: %s" % words[0])


def main():
    p = parser(__doc__)
    p.add_argument("commands", nargs="*")
    args = p.parse_args()

    pop = connect(args)
    record("greeting", 0, pop.getwelcome())
    for i, command in enumerate(args.commands, 1):
        record("cmd", i, command)
        words = command.split(" ")
        try:
            resp, lines = run(pop, args, words)
        except poplib.error_proto as e:
            arg = e.args[0] if e.args else b""
            if isinstance(arg, bytes) and arg.startswith(b"-ERR"):
                record("err", i, arg)
                continue
            record("err", i, repr(e))
            record("stop", i, b"")
            break
        except Exception as e:  # connection closed, TLS failure, timeout ...
            record("err", i, "%s: %s" % (type(e).__name__, e))
            record("stop", i, b"")
            break
        record("ok", i, resp)
        if lines is not None:
            record("lines", i, joined(lines))
    try:
        pop.close()
    except Exception:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
