#!/usr/bin/env python3
"""Write a copy of config.toml for the Thunderbird run.

  make_config.py SRC DST --tls PORT --starttls PORT --upstream PORT --dir TMPDIR

Listeners and upstream on the given loopback ports, store and admin socket
in TMPDIR, certificate paths absolute (relative to SRC's directory).
"""
import argparse
import os
import re
import tomllib

p = argparse.ArgumentParser()
p.add_argument("src")
p.add_argument("dst")
p.add_argument("--tls", type=int, required=True)
p.add_argument("--starttls", type=int, required=True)
p.add_argument("--upstream", type=int, required=True)
p.add_argument("--dir", required=True)
a = p.parse_args()

base = os.path.dirname(os.path.abspath(a.src))
text = open(a.src, encoding="utf-8").read()


def setkey(section, key, value):
    """Replace `key = ...` inside [section] with a TOML string value."""
    global text
    pat = re.compile(r"(^\[%s\]\n(?:(?!^\[).*\n)*?)^%s\s*=.*$" % (re.escape(section), re.escape(key)), re.M)
    new, n = pat.subn(lambda m: m.group(1) + '%s = "%s"' % (key, value), text, count=1)
    if n != 1:
        raise SystemExit(f"make_config: no {section}.{key} in {a.src}")
    text = new


setkey("listen", "tls", f"127.0.0.1:{a.tls}")
setkey("listen", "starttls", f"127.0.0.1:{a.starttls}")
setkey("tls", "cert", os.path.join(base, "certs/localhost.pem"))
setkey("tls", "key", os.path.join(base, "certs/localhost-key.pem"))
setkey("upstream", "address", f"127.0.0.1:{a.upstream}")
setkey("store", "path", os.path.join(a.dir, "store"))
setkey("admin", "socket", os.path.join(a.dir, "admin.sock"))
tomllib.loads(text)  # still valid
with open(a.dst, "w", encoding="utf-8") as f:
    f.write(text)
