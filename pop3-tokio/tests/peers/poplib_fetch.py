#!/usr/bin/env python3
"""Fetches a whole maildrop with Python's poplib and prints it framed.

Logs in (USER/PASS, or APOP with --apop), then for each message n in
1..count prints a "retr n" record (the RETR answer) and, unless --top is
negative, a "top n" record (the answer to TOP n --top). Also prints
"greeting 0", "stat 0" (the STAT answer line), "uidl 0" (the UIDL listing)
and "list 0" (the LIST listing), and quits at the end ("quit 0").

See poplib_common.py for the framing and for how poplib's lines are joined.
"""

import sys

from poplib_common import connect, joined, parser, record


def main():
    p = parser(__doc__)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--apop", action="store_true", help="log in with APOP")
    p.add_argument("--top", type=int, default=0, help="lines for TOP; negative: no TOP")
    p.add_argument("--no-quit", action="store_true", help="close without QUIT")
    args = p.parse_args()

    pop = connect(args)
    record("greeting", 0, pop.getwelcome())
    if args.apop:
        pop.apop(args.user, args.password)
    else:
        pop.user(args.user)
        pop.pass_(args.password)
    resp = pop._shortcmd("STAT")
    record("stat", 0, resp)
    count = int(resp.split()[1])
    _, lines, _ = pop.list()
    record("list", 0, joined(lines))
    _, lines, _ = pop.uidl()
    record("uidl", 0, joined(lines))
    for n in range(1, count + 1):
        _, lines, _ = pop.retr(n)
        record("retr", n, joined(lines))
        if args.top >= 0:
            _, lines, _ = pop.top(n, args.top)
            record("top", n, joined(lines))
    if args.no_quit:
        pop.close()
    else:
        record("quit", 0, pop.quit())
    return 0


if __name__ == "__main__":
    sys.exit(main())
