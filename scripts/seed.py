#!/usr/bin/env python3
"""Load mail into an IMAP server over IMAP (APPEND with flags and INTERNALDATE).

  seed.py --port 10143 [--manifest fixtures/manifest.toml]
      creates and subscribes every user's folders and appends the fixtures.
  seed.py --port 10143 --user alice --password alice-pw --folder Bench --generate 10000 [--size 4000]
      appends N generated messages (distinct Message-IDs) to one folder.
  seed.py ... --generate 10000 --realistic
      the same, but mail as real mailboxes hold it (see realistic()): 10,000
      messages are 370 MB, mean 37 KB, median 8 KB, p99 0.8 MB; attachments of
      incompressible bytes; generated once per (seed, N) and cached in
      $ITM_CORPUS_CACHE (default /var/cache/imap-time-machine/corpus).

Folder names in the manifest use "/" and UTF-8; they are mapped to the
server's own separator, personal namespace prefix and modified UTF-7.
Commands are pipelined with LITERAL+ so large corpora load quickly.
"""
import argparse
import base64
import math
import os
import struct
import random
import re
import socket
import sys
import tomllib


def mutf7(name):
    """RFC 3501 modified UTF-7."""
    out, buf = [], []

    def flush():
        if buf:
            raw = "".join(buf).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode().rstrip("=").replace("/", ",") + "-")
            buf.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.append("&-" if ch == "&" else ch)
        else:
            buf.append(ch)
    flush()
    return "".join(out)


def quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Imap:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=60)
        self.buf = b""
        self.n = 0
        self.readline()  # greeting

    def readline(self):
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("connection closed by server")
            self.buf += data
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_until(self, tag):
        """Reads responses (skipping literals) until the tagged line of `tag`."""
        untagged = []
        while True:
            line = self.readline()
            m = re.search(rb"\{(\d+)\}$", line)
            while m:
                need = int(m.group(1))
                while len(self.buf) < need:
                    self.buf += self.sock.recv(65536)
                line += b"\r\n" + self.buf[:need]
                self.buf = self.buf[need:]
                rest = self.readline()
                line += rest
                m = re.search(rb"\{(\d+)\}$", rest)
            if line.startswith(tag.encode() + b" "):
                return line, untagged
            untagged.append(line)

    def tag(self):
        self.n += 1
        return "s%d" % self.n

    def cmd(self, text, ok=True):
        t = self.tag()
        self.sock.sendall(("%s %s\r\n" % (t, text)).encode())
        line, untagged = self.read_until(t)
        if ok and not line.split(b" ")[1:2] == [b"OK"]:
            raise RuntimeError("%s -> %s" % (text, line.decode(errors="replace")))
        return line, untagged

    def append_many(self, items):
        """Pipelines APPENDs: items are (mailbox, flags, internaldate, bytes)."""
        tags = []
        batch = []
        for mailbox, flags, date, body in items:
            t = self.tag()
            tags.append(t)
            head = "%s APPEND %s (%s) %s {%d+}\r\n" % (t, mailbox, " ".join(flags), quote(date), len(body))
            batch.append(head.encode() + body + b"\r\n")
            if len(batch) >= 200:
                self.sock.sendall(b"".join(batch))
                batch = []
        if batch:
            self.sock.sendall(b"".join(batch))
        for t in tags:
            line, _ = self.read_until(t)
            if line.split(b" ")[1:2] != [b"OK"]:
                raise RuntimeError("APPEND failed: %s" % line.decode(errors="replace"))

    def namespace(self):
        _, untagged = self.cmd("NAMESPACE")
        for u in untagged:
            m = re.match(rb'\* NAMESPACE \(\("([^"]*)" "(.)"\)', u)
            if m:
                return m.group(1).decode(), m.group(2).decode()
        return "", "/"


def server_name(folder, prefix, sep):
    if folder.upper() == "INBOX":
        return "INBOX"
    return prefix + mutf7(folder.replace("/", sep))


def crlf(data):
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def login(args, user, password):
    c = Imap(args.host, args.port)
    c.cmd("LOGIN %s %s" % (quote(user), quote(password)))
    return c


def seed_manifest(args):
    base = os.path.dirname(os.path.abspath(args.manifest))
    with open(args.manifest, "rb") as f:
        manifest = tomllib.load(f)
    for user in manifest["user"]:
        c = login(args, user["name"], user["password"])
        prefix, sep = c.namespace()
        for folder in user["folders"]:
            name = quote(server_name(folder, prefix, sep))
            c.cmd("CREATE %s" % name)
            c.cmd("SUBSCRIBE %s" % name)
        c.cmd("SUBSCRIBE INBOX")
        items = []
        for m in manifest["message"]:
            if m["user"] != user["name"]:
                continue
            with open(os.path.join(base, m["file"]), "rb") as f:
                body = crlf(f.read())
            items.append((quote(server_name(m["folder"], prefix, sep)), m["flags"], m["internaldate"], body))
        c.append_many(items)
        c.cmd("LOGOUT")


def generate(args):
    c = login(args, args.user, args.password)
    prefix, sep = c.namespace()
    name = quote(server_name(args.folder, prefix, sep))
    c.cmd("CREATE %s" % name, ok=False)
    # Text of random words: compresses like real prose (about 3:1), unlike
    # a repeated sentence.
    words = WORDS
    rng = random.Random(args.seed)
    items = []
    if args.realistic:
        for i, body in enumerate(realistic_corpus(args.seed, args.generate, args.user)):
            flags = ["\\Seen"] if i % 3 else []
            items.append((name, flags, "02-Nov-2026 09:00:00 +0000", body))
        c.append_many(items)
        c.cmd("LOGOUT")
        return
    for i in range(args.generate):
        head = (
            "Message-ID: <gen-%d-%d@bench.example>\n"
            "Date: Mon, 02 Nov 2026 09:%02d:%02d +0000\n"
            "From: Sender %d <sender%d@bench.example>\n"
            "To: %s@example.org\n"
            "Subject: Generated message %d\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=us-ascii\n\n" % (args.seed, i, (i // 60) % 60, i % 60, i % 97, i % 97, args.user, i)
        )
        lines = []
        size = len(head)
        while size < args.size:
            line = " ".join(rng.choice(words) for _ in range(12)) + "\n"
            lines.append(line)
            size += len(line) + 1
        body = "".join(lines)
        flags = ["\\Seen"] if i % 3 else []
        items.append((name, flags, "02-Nov-2026 09:00:00 +0000", crlf((head + body).encode())))
    c.append_many(items)
    c.cmd("LOGOUT")


WORDS = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had by "
    "word but not what all were we when your can said there use an each which she do how their if will up "
    "other about out many then them these so some her would make like him into time has look two more write "
    "go see number no way could people my than first water been call who oil its now find long down day did "
    "get come made may part over new sound take only little work know place year live me back give most very "
    "after thing our just name good sentence man think say great where help through much before line right "
    "invoice meeting project budget report schedule server backup restore mailbox folder message attachment"
).split()


def prose(rng, size):
    """Random words in lines: compresses like real prose (about 3:1)."""
    lines, n = [], 0
    while n < size:
        line = " ".join(rng.choice(WORDS) for _ in range(12))
        lines.append(line)
        n += len(line) + 1
    return "\n".join(lines) + "\n"


def b64_lines(data):
    text = base64.b64encode(data).decode()
    return "\n".join(text[i:i + 76] for i in range(0, len(text), 76)) + "\n"


def log_uniform(rng, lo, hi):
    return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def realistic(rng, seed, i, user):
    """One message of a realistic mix (issue 14): 45 % text/plain, 35 %
    multipart/alternative (text and HTML), 15 % with a 5-100 KB attachment,
    4 % with a 100 KB-1.2 MB one, 1 % forwarding a message/rfc822; text
    parts log-normal around 4 KB; attachments base64 of random bytes (they
    do not compress, as real PDFs and JPEGs barely do)."""
    text = prose(rng, min(200_000, int(rng.lognormvariate(math.log(4000), 0.8))))
    head = (
        "Message-ID: <real-%d-%d@bench.example>\n"
        "Date: Mon, 02 Nov 2026 %02d:%02d:%02d +0000\n"
        "From: Sender %d <sender%d@bench.example>\n"
        "To: %s@example.org\n"
        "Subject: Realistic message %d about the %s\n"
        "MIME-Version: 1.0\n" % (seed, i, (i // 3600) % 24, (i // 60) % 60, i % 60, i % 97, i % 97, user, i,
                                 rng.choice(WORDS))
    )
    b = "b-%d-%d" % (seed, i)
    r = rng.random()
    if r < 0.45:
        return head + "Content-Type: text/plain; charset=us-ascii\n\n" + text
    if r < 0.80:
        html = "<html><body><p>" + text.replace("\n", "</p>\n<p>") + "</p></body></html>\n"
        return (head + 'Content-Type: multipart/alternative; boundary="%s"\n\n'
                "--%s\nContent-Type: text/plain; charset=us-ascii\n\n%s"
                "--%s\nContent-Type: text/html; charset=us-ascii\n\n%s--%s--\n" % (b, b, text, b, html, b))
    if r < 0.99:
        size = log_uniform(rng, 5_000, 100_000) if r < 0.95 else log_uniform(rng, 100_000, 1_200_000)
        kind = rng.choice([("application/pdf", "report.pdf"), ("image/jpeg", "photo.jpg"),
                           ("application/zip", "files.zip")])
        return (head + 'Content-Type: multipart/mixed; boundary="%s"\n\n'
                "--%s\nContent-Type: text/plain; charset=us-ascii\n\n%s"
                '--%s\nContent-Type: %s; name="%s"\nContent-Disposition: attachment; filename="%s"\n'
                "Content-Transfer-Encoding: base64\n\n%s--%s--\n"
                % (b, b, text, b, kind[0], kind[1], kind[1], b64_lines(rng.randbytes(size)), b))
    inner = ("From: someone@elsewhere.example\nSubject: the original\nDate: Sun, 01 Nov 2026 10:00:00 +0000\n"
             "Content-Type: text/plain; charset=us-ascii\n\n" + prose(rng, 3000))
    return (head + 'Content-Type: multipart/mixed; boundary="%s"\n\n'
            "--%s\nContent-Type: text/plain; charset=us-ascii\n\n%s"
            "--%s\nContent-Type: message/rfc822\n\n%s--%s--\n" % (b, b, text, b, inner, b))


def realistic_corpus(seed, n, user):
    """N realistic messages (CRLF), generated once and cached."""
    cache = os.environ.get("ITM_CORPUS_CACHE", "/var/cache/imap-time-machine/corpus")
    path = os.path.join(cache, "realistic-v1-%d-%d-%s.bin" % (seed, n, user))
    try:
        with open(path, "rb") as f:
            data = f.read()
        out, at = [], 0
        while at < len(data):
            (length,) = struct.unpack_from(">I", data, at)
            out.append(data[at + 4:at + 4 + length])
            at += 4 + length
        if len(out) == n:
            return out
    except OSError:
        pass
    rng = random.Random(seed)
    out = [crlf(realistic(rng, seed, i, user).encode()) for i in range(n)]
    try:
        os.makedirs(cache, exist_ok=True)
        tmp = path + ".tmp%d" % os.getpid()
        with open(tmp, "wb") as f:
            for m in out:
                f.write(struct.pack(">I", len(m)))
                f.write(m)
        os.replace(tmp, path)
    except OSError as e:
        print("seed.py: not cached (%s)" % e, file=sys.stderr)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--manifest", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "manifest.toml"))
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--folder", default="Bench")
    p.add_argument("--generate", type=int)
    p.add_argument("--size", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0, help="varies generated content and Message-IDs")
    p.add_argument("--realistic", action="store_true", help="a realistic mix of sizes and MIME (ignores --size)")
    args = p.parse_args()
    if args.generate:
        if not (args.user and args.password):
            p.error("--generate needs --user and --password")
        generate(args)
    else:
        seed_manifest(args)


if __name__ == "__main__":
    try:
        main()
    except (OSError, RuntimeError) as e:
        print("seed.py: %s" % e, file=sys.stderr)
        sys.exit(1)
