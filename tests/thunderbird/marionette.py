"""A minimal Marionette client (the protocol Gecko's test harnesses speak).

Thunderbird started with `--marionette` and the pref `marionette.port`
listens on loopback. Messages are `LENGTH:JSON`; a command is
`[0, id, name, params]`, its answer `[1, id, error, result]`. Only what
drive.py needs: a session, the chrome context, and running scripts.
"""
import json
import socket
import time


class MarionetteError(Exception):
    pass


class Marionette:
    def __init__(self, port, host="127.0.0.1", timeout=60.0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection((host, port), timeout=5)
                self.sock.settimeout(None)
                self._buf = b""
                hello = self._recv()
                if hello.get("marionetteProtocol") != 3:
                    raise MarionetteError(f"unexpected hello {hello}")
                break
            except (OSError, ValueError, MarionetteError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)
        self._id = 0

    def _recv(self):
        while b":" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise MarionetteError("connection closed")
            self._buf += chunk
        n, rest = self._buf.split(b":", 1)
        n = int(n)
        while len(rest) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise MarionetteError("connection closed")
            rest += chunk
        self._buf = rest[n:]
        return json.loads(rest[:n])

    def command(self, name, params=None):
        self._id += 1
        data = json.dumps([0, self._id, name, params or {}]).encode()
        self.sock.sendall(str(len(data)).encode() + b":" + data)
        while True:
            msg = self._recv()
            if msg[0] == 1 and msg[1] == self._id:
                break
        if msg[2]:
            err = msg[2]
            raise MarionetteError(f"{name}: {err.get('error')}: {err.get('message')}\n{err.get('stacktrace', '')}")
        return msg[3]

    def start(self, script_timeout_ms=120000):
        self.command("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {"moz:webdriverClick": False}}})
        self.command("Marionette:SetContext", {"value": "chrome"})
        self.command("WebDriver:SetTimeouts", {"script": script_timeout_ms})

    def js(self, script, *args):
        """Run `script` (a function body; `arguments` holds args) in the
        current chrome window, as the body of an async function (`await`
        works; the returned promise is awaited)."""
        body = "return (async function() {\n%s\n}).apply(this, arguments);" % script
        res = self.command("WebDriver:ExecuteScript", {"script": body, "args": list(args), "newSandbox": False})
        return res.get("value") if isinstance(res, dict) else res

    def window_handles(self):
        return self.command("WebDriver:GetWindowHandles")

    def switch_to_window(self, handle):
        self.command("WebDriver:SwitchToWindow", {"handle": handle, "focus": True})

    def close(self):
        try:
            self.command("WebDriver:DeleteSession")
        except Exception:
            pass
        self.sock.close()
