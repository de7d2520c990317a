"""Shared by poplib_fetch.py and poplib_session.py: connecting with Python's
poplib (plain, STLS or implicit TLS) and the framed output format.

Output format (binary-safe, on stdout): a sequence of records, each
    KIND SP INDEX SP LENGTH LF  followed by LENGTH raw bytes and one LF.
KIND is a short ASCII word, INDEX a decimal number (0 when meaningless).

poplib hands back multi-line answers as lines without their line ends (and
with dot-stuffing removed). They are written out joined with CRLF plus a final
CRLF, i.e. as the lines arrived on the wire; zero lines give zero bytes.
Two poplib details: a line longer than poplib._MAXLINE is an error (raised
here by --maxline), and a line that does not end in CRLF but starts with CR
loses its first and last byte (poplib's own rule for odd line ends); a
server that sends CRLF everywhere is reproduced exactly (a bare LF line end
comes back as CRLF).
"""

import argparse
import poplib
import socket
import ssl
import sys

out = sys.stdout.buffer


def record(kind, index, data):
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    out.write(b"%s %d %d\n" % (kind.encode("ascii"), index, len(data)))
    out.write(data)
    out.write(b"\n")
    out.flush()


def joined(lines):
    return b"".join(line + b"\r\n" for line in lines)


def add_connection_args(parser):
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tls", choices=["none", "stls", "implicit"], default="none")
    parser.add_argument("--cafile", help="CA certificates (PEM) to verify the server with")
    parser.add_argument(
        "--server-name",
        help="name to send (SNI) and verify in the certificate; default: --host",
    )
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument(
        "--maxline",
        type=int,
        default=1 << 22,
        help="poplib._MAXLINE (the standard 2048 is too small for long lines)",
    )


def tls_context(args):
    ctx = ssl.create_default_context(cafile=args.cafile)
    return ctx


class _POP3SSLNamed(poplib.POP3_SSL):
    """POP3_SSL connecting to one host while verifying another name."""

    def __init__(self, host, port, server_name, context, timeout):
        self._server_name = server_name
        super().__init__(host, port, context=context, timeout=timeout)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self._server_name)


def connect(args):
    """Connects as asked; returns the poplib object (STLS already done)."""
    poplib._MAXLINE = args.maxline
    name = args.server_name or args.host
    if args.tls == "implicit":
        return _POP3SSLNamed(args.host, args.port, name, tls_context(args), args.timeout)
    pop = poplib.POP3(args.host, args.port, timeout=args.timeout)
    if args.tls == "stls":
        # poplib verifies against (and sends as SNI) the `host` attribute.
        pop.host = name
        pop.stls(context=tls_context(args))
    return pop


def parser(description):
    p = argparse.ArgumentParser(description=description)
    add_connection_args(p)
    return p
