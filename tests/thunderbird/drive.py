#!/usr/bin/env python3
"""Drive a running Thunderbird (Marionette) against the proxy and check what
a person would see; Dovecot (direct IMAP) is the ground truth.

Started by scripts/thunderbird-gui.sh, which owns every process. Prints one
PASS/FAIL line per check (and INFO lines); exit status 0 only if all pass.
"""
import argparse
import imaplib
import os
import re
import ssl
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from marionette import Marionette  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TM = "Time Machine"
USER, PASSWORD = "alice", "alice-pw"

p = argparse.ArgumentParser()
p.add_argument("--marionette", type=int, required=True)
p.add_argument("--proxy", type=int, required=True, help="the proxy's implicit-TLS port")
p.add_argument("--dovecot", type=int, required=True)
p.add_argument("--ca", required=True)
p.add_argument("--config", required=True)
p.add_argument("--bin", required=True, help="imap-time-machine binary (export)")
p.add_argument("--today", required=True, help="the newest snapshot day")
p.add_argument("--older", help="an older snapshot day (not subscribed)")
p.add_argument("--display", required=True)
p.add_argument("--screenshot", required=True)
p.add_argument("--imap-log", help="Thunderbird's MOZ_LOG IMAP file (to name the commands it sent)")
a = p.parse_args()

results = []


def report(ok, name, detail):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def info(msg):
    print(f"INFO {msg}", flush=True)


def q(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- ground truth and the proxy, by plain IMAP ------------------------------


def dovecot():
    c = imaplib.IMAP4("127.0.0.1", a.dovecot)
    c.login(USER, PASSWORD)
    return c


def proxy():
    ctx = ssl.create_default_context(cafile=a.ca)
    c = imaplib.IMAP4_SSL("127.0.0.1", a.proxy, ssl_context=ctx)
    c.login(USER, PASSWORD)
    return c


def ok(resp, what):
    typ, data = resp
    if typ != "OK":
        raise RuntimeError(f"{what}: {typ} {data}")
    return data


def status(c, box):
    data = ok(c.status(q(box), "(MESSAGES UIDNEXT)"), f"STATUS {box}")
    m = re.search(rb"MESSAGES (\d+) UIDNEXT (\d+)", data[0])
    return int(m.group(1)), int(m.group(2))


def fetch_all(c, box):
    """{uid: (flags, BODY[])} of a folder, read-only."""
    ok(c.select(q(box), readonly=True), f"EXAMINE {box}")
    typ, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
    out = {}
    for item in data:
        if isinstance(item, tuple):
            meta = item[0].decode()
            uid = int(re.search(r"UID (\d+)", meta).group(1))
            flags = re.search(r"FLAGS \(([^)]*)\)", meta).group(1).split()
            out[uid] = (flags, item[1])
    return out


def flags_of(c, box, uid):
    ok(c.select(q(box), readonly=True), f"EXAMINE {box}")
    typ, data = c.uid("FETCH", str(uid), "(FLAGS)")
    for item in data:
        if item and b"FLAGS" in (item if isinstance(item, bytes) else item[0]):
            raw = item if isinstance(item, bytes) else item[0]
            return re.search(rb"FLAGS \(([^)]*)\)", raw).group(1).decode().split()
    return None


def fresh_proxy(fn):
    c = proxy()
    try:
        return fn(c)
    finally:
        c.logout()


def fresh_dovecot(fn):
    c = dovecot()
    try:
        return fn(c)
    finally:
        c.logout()


def new_messages(box, uidnext_before):
    def go(c):
        msgs = fetch_all(c, box)
        return {u: v for u, v in msgs.items() if u >= uidnext_before}

    return fresh_dovecot(go)


def poll(fn, timeout=20.0, step=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def sent_commands(pattern):
    """The IMAP commands Thunderbird sent that match pattern (from its log)."""
    if not a.imap_log:
        return []
    out = []
    d = os.path.dirname(a.imap_log)
    for name in sorted(os.listdir(d)):
        if name.startswith(os.path.basename(a.imap_log)):
            for line in open(os.path.join(d, name), errors="replace"):
                m_ = re.search(r":SendData: \S+ (.*)$", line)
                if m_ and re.search(pattern, m_.group(1), re.I):
                    out.append(m_.group(1).strip())
    return out


def export(folder, uid):
    return subprocess.run(
        [a.bin, "export", "--user", USER, "--date", a.today, "--folder", folder, "--uid", str(uid), "-c", a.config],
        check=True,
        capture_output=True,
    ).stdout


# --- Thunderbird ---------------------------------------------------------------

CHECKS = ["1 folder pane", "2 reading clears unread", "3 delete copies nothing", "4 snapshot folders not targets", "5 drag out"]


def setup_failed(kind, value, tb_):
    """Until the checks run, an error fails every check (and says why)."""
    traceback.print_exception(kind, value, tb_, file=sys.stderr)
    for name in CHECKS:
        print(f"FAIL {name}: not run, setup failed: {str(value).splitlines()[0] if str(value) else kind.__name__}", flush=True)


sys.excepthook = setup_failed
m = Marionette(a.marionette, timeout=90)
m.start()
m.js(open(os.path.join(HERE, "tb-helpers.js"), encoding="utf-8").read())


def tb(fn, *args):
    return m.js(f"return await ITM.{fn}(...arguments);", *args)


def screenshot(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    subprocess.run(["import", "-window", "root", path], check=True, env={**os.environ, "DISPLAY": a.display})


day = f"{TM}/{a.today}"
snap_inbox = f"{day}/INBOX"
base = f"imap://{USER}@127.0.0.1"
uri = lambda name: f"{base}/{name}"  # noqa: E731

# What the proxy holds (for choosing messages and for comparisons).
snapshot = fresh_proxy(lambda c: fetch_all(c, snap_inbox))
proxy_days = fresh_proxy(
    lambda c: sorted(
        {
            m_.group(1)
            for line in ok(c.list('""', q(TM + "/%")), "LIST")
            if line and (m_ := re.search(r'"?%s/(\d{4}-\d\d-\d\d)"?$' % TM, line.decode()))
        }
    )
)
proxy_day_folders = fresh_proxy(
    lambda c: sorted(
        re.search(r'"/" (.*)$', line.decode()).group(1).strip('"')[len(day) + 1 :]
        for line in ok(c.list('""', q(day + "/*")), "LIST")
        if line
    )
)
unread = [u for u, (f, _) in sorted(snapshot.items()) if "\\Seen" not in f]
seen = [u for u, (f, _) in sorted(snapshot.items()) if "\\Seen" in f]
if not unread or len(snapshot) < 4:
    raise SystemExit(f"fixture: expected >= 4 messages with an unread one in {snap_inbox}, got {len(snapshot)}")
read_uid = unread[0]
delete_uid, copy_uid, drag_uid = seen[0], seen[1], seen[2]
# The screenshot shows the forwarded message (the fixture's logo.png in the
# unread one has a bad CRC and shows as a broken image in any client).
shot_uid = next((u for u, (_, body) in snapshot.items() if b"<fwd-0004@example.org>" in body), read_uid)
info(f"proxy days {proxy_days}; {day} has {len(proxy_day_folders)} folders; {snap_inbox} UIDs {sorted(snapshot)}")

size = tb("ready")
acct = tb("createAccount", {"host": "127.0.0.1", "port": a.proxy, "user": USER, "password": PASSWORD, "name": f"{USER} (Time Machine proxy)"})
info(f"window {size['width']}x{size['height']}; account {acct['key']} using_subscription={acct['usingSubscription']}")
sys.excepthook = sys.__excepthook__


# 1. Folder pane -------------------------------------------------------------
def check_folder_pane():
    m.js(
        "return await ITM.waitFor(() => ITM.folder(arguments[0]) && ITM.about3().folderPane.getRowForFolder(arguments[0]), 60000, 'the snapshot INBOX in the folder pane');",
        uri(snap_inbox),
    )
    # Discovery is one LSUB-style LIST: wait for every folder of the day the
    # proxy lists, then for the count to settle.
    want = {uri(f"{day}/{f}") for f in proxy_day_folders}
    deadline, last = time.monotonic() + 30, None
    while True:
        folders = tb("folders", base)
        have = {f["uri"] for f in folders}
        if (want <= have and last == len(folders)) or time.monotonic() > deadline:
            break
        last = len(folders) if want <= have else None
        time.sleep(0.3)
    for name in (TM, day):
        tb("expand", uri(name))
    rows = tb("paneRows")
    tm_prefix = uri(TM) + "/"
    tb_days = sorted({f["uri"][len(tm_prefix) :].split("/")[0] for f in folders if f["uri"].startswith(tm_prefix) and re.match(r"\d{4}-\d\d-\d\d(/|$)", f["uri"][len(tm_prefix) :])})
    tb_day_folders = sorted(f["uri"][len(uri(day)) + 1 :] for f in folders if f["uri"].startswith(uri(day) + "/"))
    shown = {r["uri"]: r for r in rows if r["shown"]}
    want_shown = [uri(TM), uri(day), uri(snap_inbox), uri(f"{day}/Work")]
    missing = [u for u in want_shown if u not in shown]
    labels = [shown[u]["label"] for u in want_shown if u in shown]
    older_shown = [r["uri"] for r in rows if a.older and f"/{a.older}" in r["uri"]]
    ok_ = (
        tb_days == [a.today]
        and not missing
        and tb_day_folders == proxy_day_folders
        and not older_shown
        and (a.older is None or a.older in proxy_days)
    )
    report(
        ok_,
        "1 folder pane",
        f"rows shown {labels}; Thunderbird lists day(s) {tb_days} with {len(tb_day_folders)} folders "
        f"(proxy: {len(proxy_day_folders)} in {a.today}; days on the proxy {proxy_days}, older day in the pane: {older_shown or 'no'})",
    )


# 2. Reading a snapshot message clears unread ---------------------------------
def check_read():
    before_proxy = fresh_proxy(lambda c: flags_of(c, snap_inbox, read_uid))
    tb("showFolder", uri(snap_inbox), len(snapshot))
    before_tb = tb("msgState", uri(snap_inbox), read_uid)
    sel = tb("selectMessage", uri(snap_inbox), read_uid)
    m.js("return await ITM.waitFor(() => ITM.hdr(arguments[0], arguments[1]).isRead, 10000, 'read');", uri(snap_inbox), read_uid)
    # What a fresh session through the proxy says (STORE is asynchronous).
    after_proxy = poll(lambda: (lambda f: f if f and "\\Seen" in f else None)(fresh_proxy(lambda c: flags_of(c, snap_inbox, read_uid))), 20) or fresh_proxy(
        lambda c: flags_of(c, snap_inbox, read_uid)
    )
    status_ = tb("refresh", uri(snap_inbox))
    after_tb = tb("msgState", uri(snap_inbox), read_uid)
    # The picture: the tree expanded, a snapshot message open.
    tb("expand", uri(TM))
    tb("expand", uri(day))
    tb("selectMessage", uri(snap_inbox), shot_uid)
    tb("quiet")
    screenshot(a.screenshot)
    ok_ = (
        before_proxy is not None
        and "\\Seen" not in before_proxy
        and before_tb["isRead"] is False
        and "\\Seen" in (after_proxy or [])
        and after_tb["isRead"] is True
        and after_tb["rowUnread"] is False
    )
    report(
        ok_,
        "2 reading clears unread",
        f"UID {read_uid} {sel['subject']!r}: before proxy {before_proxy} / Thunderbird read={before_tb['isRead']}; "
        f"after display fresh proxy session FLAGS {after_proxy}; after refresh (status {status_:#x}) Thunderbird read={after_tb['isRead']} row-unread={after_tb['rowUnread']}",
    )


# 3. Delete on a snapshot message copies nothing -----------------------------
def check_delete():
    trash_before = fresh_dovecot(lambda c: status(c, "Trash"))
    tb("selectMessage", uri(snap_inbox), delete_uid)
    cmds = tb("commands")
    caps = {f["uri"]: f for f in tb("folders", base)}[uri(snap_inbox)]
    # A person: the Delete key on the thread pane (real X key events; Up and
    # Down first show that keys reach the thread pane), the header's Delete.
    tb("focusThreadTree")
    xkey = lambda k: subprocess.run(["xdotool", "key", "--clearmodifiers", k], env={**os.environ, "DISPLAY": a.display}, check=True)  # noqa: E731
    idx = m.js("return ITM.about3().threadTree.selectedIndex;")
    xkey("Up" if idx > 0 else "Down")
    moved = m.js(
        "return await ITM.waitFor(() => ITM.about3().threadTree.selectedIndex != arguments[0], 5000, 'a key').then(() => true, () => false);", idx
    )
    xkey("Down" if idx > 0 else "Up")
    m.js("return await ITM.waitFor(() => ITM.about3().messageBrowser.contentWindow.gMessage?.messageKey == arguments[0], 10000, 'the message again');", delete_uid)
    xkey("Delete")
    tb("clickHeaderDelete")
    tb("refresh", uri(snap_inbox))  # anything the key or the button queued has run
    ui_moves = sent_commands(r'^uid (move|copy|store) %d\b' % delete_uid)
    # Past Thunderbird's guard: delete as an ACL-blind client would (UID MOVE
    # to Trash). Thunderbird hides the message at once; the server's NO comes
    # back as an alert and the message is fetched again.
    st = tb("forceDelete", uri(snap_inbox), delete_uid)
    alerts = poll(lambda: tb("takeAlerts"), 15, 0.3)
    back = m.js(
        "return await ITM.waitFor(() => ITM.hdr(arguments[0], arguments[1]), 20000, 'the message back').then(() => true, () => false);",
        uri(snap_inbox),
        delete_uid,
    )
    tb("refresh", uri(snap_inbox))
    tb("showFolder", uri(snap_inbox))
    after = tb("msgState", uri(snap_inbox), delete_uid)
    alerts += tb("takeAlerts")
    moves = sent_commands(r'^uid (move|copy|store) %d\b' % delete_uid)
    trash_after = fresh_dovecot(lambda c: status(c, "Trash"))
    still_on_proxy = fresh_proxy(lambda c: flags_of(c, snap_inbox, delete_uid)) is not None
    ok_ = (
        trash_after == trash_before
        and after["inDb"]
        and after["viewIndex"] >= 0
        and still_on_proxy
        and caps["canDeleteMessages"] is False
        and not cmds["cmd_delete"]
        and not cmds["cmd_deleteMessage"]
        and moved
        and not ui_moves
    )
    report(
        ok_,
        "3 delete copies nothing",
        f"UID {delete_uid}: canDeleteMessages={caps['canDeleteMessages']}; Delete command enabled={cmds['cmd_delete']}, "
        f"header Delete button disabled={cmds['headerDeleteButtonDisabled']}; Delete key (keys reach the thread pane: {moved}) "
        f"and header button sent {ui_moves or 'nothing'}; forced delete sent {moves or '?'} "
        f"(local status {st if isinstance(st, str) else hex(st)}, message back in Thunderbird {back}), "
        f"Dovecot Trash (MESSAGES, UIDNEXT) {trash_before} -> {trash_after}; after refresh Thunderbird lists it: "
        f"{after['inDb'] and after['viewIndex'] >= 0}; alert shown: {alerts[0]['text'][:140] if alerts else 'none'}",
    )


# 4. Snapshot folders are not copy/move targets -------------------------------
def check_targets():
    folders = {f["uri"]: f for f in tb("folders", base)}
    snap = {u: f for u, f in folders.items() if u.startswith(uri(day) + "/")}
    real = {u: f for u, f in folders.items() if not u.startswith(uri(TM))}
    bad_snap = [u for u, f in snap.items() if f["canAddMessages"]]
    bad_real = [u for u, f in real.items() if not f["canAddMessages"]]
    tb("selectMessage", uri(snap_inbox), copy_uid)
    targets = tb("fileTargets", "mailContext-copyMenu")
    snap_targets = [t for t in targets if t.startswith(uri(day))]
    drag_snap = tb("dragOver", uri(snap_inbox), copy_uid, uri(f"{day}/Work"))
    drag_inbox = tb("dragOver", uri(snap_inbox), copy_uid, uri("INBOX"))
    ok_ = (
        snap
        and not bad_snap
        and folders[uri("INBOX")]["canAddMessages"]
        and not bad_real
        and not snap_targets
        and uri("INBOX") in targets
        and drag_snap == "none"
        and drag_inbox in ("move", "copy")
    )
    report(
        ok_,
        "4 snapshot folders not targets",
        f"canAddMessages: {len(snap)} snapshot folders {'all false' if not bad_snap else 'TRUE for ' + str(bad_snap)}, "
        f"INBOX {folders[uri('INBOX')]['canAddMessages']}; Copy To menu offers {len(targets)} folders, "
        f"{len(snap_targets)} of them snapshot folders, INBOX {'yes' if uri('INBOX') in targets else 'no'}; "
        f"drag over {day}/Work: {drag_snap}, over INBOX: {drag_inbox}",
    )


# 5. Drag out works -----------------------------------------------------------
def check_drag_out():
    results5 = []

    def one(label, uid, dest, action):
        before = fresh_dovecot(lambda c: status(c, dest))
        how = action()
        new = poll(lambda: new_messages(dest, before[1]), 20)
        original = snapshot[uid][1]
        exported = export("INBOX", uid)
        bodies = [b for _, b in new.values()] if new else []
        identical = len(bodies) == 1 and bodies[0] == original == exported
        kept = fresh_proxy(lambda c: flags_of(c, snap_inbox, uid)) is not None
        results5.append(identical and kept)
        cmds = sent_commands(r'^uid (move|copy) %d "?%s"?$' % (uid, re.escape(dest)))
        return f"{label} UID {uid} -> {dest}: {how}, sent {cmds or '?'}; Dovecot +{len(bodies)} message(s), byte-identical to the snapshot and the export: {identical} ({len(original)} bytes); snapshot keeps it: {kept}"

    parts = []
    parts.append(one("Copy To", copy_uid, "Archive", lambda: f"cmd_copyMessage enabled={tb('copyTo', uri(snap_inbox), copy_uid, uri('Archive'))}"))

    def drag():
        tb("drop", uri(snap_inbox), drag_uid, uri("Work"), "move")
        return "dropped on the Work row (plain drag = move)"

    parts.append(one("drag", drag_uid, "Work", drag))

    def move():
        st = tb("forceMove", uri(snap_inbox), delete_uid, uri("Work/Projects"))
        return f"copy service move status {st if isinstance(st, str) else hex(st)}"

    parts.append(one("move", delete_uid, "Work/Projects", move))
    tb("refresh", uri(snap_inbox))
    after = tb("msgState", uri(snap_inbox), delete_uid)
    alerts = tb("takeAlerts")
    report(
        all(results5),
        "5 drag out",
        "; ".join(parts) + f"; after the move and a refresh Thunderbird lists UID {delete_uid} in the snapshot: {after['inDb'] and after['viewIndex'] >= 0}"
        + (f"; alert: {alerts[0]['text'][:120]}" if alerts else ""),
    )


for name, check in zip(CHECKS, (check_folder_pane, check_read, check_delete, check_targets, check_drag_out)):
    try:
        check()
    except Exception as e:  # a broken step is a failed check, the rest still run
        report(False, name, f"error: {e}".splitlines()[0])
        traceback.print_exc(file=sys.stderr)

m.close()
sys.exit(0 if results and all(results) else 1)
