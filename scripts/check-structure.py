#!/usr/bin/env python3
"""Structure checks CI runs (docs/ARCHITECTURE.md, "Rules"):

1. No import cycles: neither between files (modules) nor between the
   top-level modules (`session`, `relay`, `upstream`, ...). `mod x;`
   declarations are not imports; `use` paths and inline `crate::`,
   `super::` paths are.
2. No status line (`tag OK|NO|BAD ...`, `* OK|NO|BAD|BYE ...`) is formatted
   outside the response module (`crates/imap/src/response.rs`): everything
   else builds an `imap::response::Status`.

Exit status 1 with a list of findings when a rule is broken.
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [(ROOT / "src", "crate"), (ROOT / "crates/imap/src", "crate::imap")]
RESPONSE_MODULE = ROOT / "crates/imap/src/response.rs"


def module_of(path: Path, base: Path, prefix: str) -> str:
    rel = path.relative_to(base).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join([prefix] + parts) if parts else prefix


def without_tests(text: str) -> str:
    """The code of a file: test modules and comments left out."""
    i = text.find("#[cfg(test)]\nmod ")
    text = text if i < 0 else text[:i]
    return "\n".join("" if l.strip().startswith("//") else l for l in text.splitlines())


def files():
    for base, prefix in SOURCES:
        for path in sorted(base.rglob("*.rs")):
            yield path, module_of(path, base, prefix)


PATH_RE = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_RE = re.compile(r"\buse\s+([^;]+);", re.S)


def expand_use(tree: str):
    """`a::{b, c::{d}}` -> [a::b, a::c::d]."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, s):
        depth, start, items = 0, 0, []
        for i, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(s[start:i])
                start = i + 1
        items.append(s[start:])
        for item in items:
            if not item:
                continue
            m = re.match(r"^([^{]*?)::\{(.*)\}$", item)
            if m:
                walk(prefix + m.group(1) + "::", m.group(2))
            else:
                out.append(prefix + item.split(" as ")[0])

    walk("", tree)
    return out


def resolve(path: str, here: str, modules: set, is_mod_file: bool) -> str | None:
    parts = path.split("::")
    cur = here.split("::")
    if not is_mod_file and parts[0] in ("super", "self"):
        # A file module's `super` is its parent module.
        pass
    if parts[0] == "crate":
        base, rest = ["crate"], parts[1:]
    else:
        base, rest = list(cur), list(parts)
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
    best = None
    full = base + rest
    for n in range(len(full), 0, -1):
        cand = "::".join(full[:n])
        if cand in modules:
            best = cand
            break
    return best


def import_graph():
    mods = {}
    for path, mod in files():
        mods[mod] = path
    names = set(mods)
    graph = {m: set() for m in names}
    for mod, path in mods.items():
        text = without_tests(path.read_text())
        is_mod_file = path.name in ("mod.rs", "lib.rs", "main.rs")
        paths = []
        for m in USE_RE.finditer(text):
            paths.extend(expand_use(m.group(1)))
        paths.extend(PATH_RE.findall(text))
        for p in paths:
            if not p.startswith(("crate", "super", "self")):
                continue
            target = resolve(p, mod, names, is_mod_file)
            if target and target != mod and not mod.startswith(target + "::"):
                # A child naming its ancestor's items is an import too,
                # unless the ancestor is the crate root's re-export table.
                graph[mod].add(target)
            elif target and mod.startswith(target + "::") and target not in ("crate", "crate::imap"):
                graph[mod].add(target)
    return graph


def cycles(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            strong(v)
    return out


def top(mod: str) -> str:
    parts = mod.split("::")
    return "::".join(parts[:2])


STATUS_RES = [
    re.compile(r"\{[A-Za-z_]*tag[A-Za-z_]*\}\s+(OK|NO|BAD)\b"),
    re.compile(r"\"\*\s(OK|NO|BAD|BYE|PREAUTH)\b"),
    re.compile(r"b\"\*\s(OK|NO|BAD|BYE|PREAUTH)\b"),
]


def status_findings():
    out = []
    for path, _ in files():
        if path == RESPONSE_MODULE:
            continue
        text = without_tests(path.read_text())
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip().startswith("//"):
                continue
            if any(r.search(line) for r in STATUS_RES):
                out.append(f"{path.relative_to(ROOT)}:{n}: status line formatted by hand: {line.strip()}")
    return out


def main():
    graph = import_graph()
    problems = []
    for c in cycles(graph):
        problems.append("import cycle between files: " + " <-> ".join(c))
    tops = {}
    for a, targets in graph.items():
        for b in targets:
            ta, tb = top(a), top(b)
            if ta != tb and ta != "crate" and tb != "crate":
                tops.setdefault(ta, set()).add(tb)
    for c in cycles(tops):
        problems.append("import cycle between modules: " + " <-> ".join(c))
    problems.extend(status_findings())
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"structure ok: {len(graph)} modules, no import cycles, status lines only in the response module")


if __name__ == "__main__":
    main()
