#!/usr/bin/env python3
"""Import cycles between the modules of each crate (a module is a file under src/): prints the module
graph's cycles, exits 1 when there is any. `cargo tree -p bunker -e normal --depth 1` shows the crates'
own direction (bunker -> bunker-ops -> {sources, engine, config, scratch}); this looks inside them.

    scripts/module-cycles.py            # every crate of the workspace
    scripts/module-cycles.py --graph    # and each module's imports

Imports are read from `use crate::…`, `crate::…::` paths and `super::…` paths (test modules excluded).
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def modules(src):
    """module path (tuple) -> file, for every .rs file under src."""
    out = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
            parts = parts[:-1]
        if parts and parts[-1] == "tests":
            continue
        out[tuple(parts)] = f
    return out


def strip_tests(text):
    """The file without its `#[cfg(test)] mod tests { … }` block and comments."""
    text = re.sub(r"//[^\n]*", "", text)
    m = re.search(r"#\[cfg\(test\)\]\s*mod \w+\s*\{", text)
    return text[: m.start()] if m else text


def resolve(path, mods):
    """The longest module prefix of an import path."""
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return None


def edges(mods):
    graph = {m: set() for m in mods}
    for mod, f in mods.items():
        text = strip_tests(f.read_text())
        paths = []
        for m in re.finditer(r"\bcrate::((?:\w+::)*\w+)", text):
            paths.append(m.group(1).split("::"))
        for m in re.finditer(r"\b((?:super::)+)((?:\w+::)*\w+)", text):
            ups = m.group(1).count("super::")
            base = list(mod[:-1]) if f.name != "mod.rs" else list(mod)
            base = base[: len(base) - (ups - 1)] if ups > 1 else base
            paths.append(base + m.group(2).split("::"))
        for m in re.finditer(r"use crate::\{([^}]*)\}", text):
            for item in m.group(1).split(","):
                paths.append(item.strip().split("::"))
        for p in paths:
            target = resolve(p, mods)
            if target is not None and target != mod and not (mod[: len(target)] == target):
                graph[mod].add(target)
    return graph


def cycles(graph):
    found, index, low, stack, on, counter = [], {}, {}, [], set(), [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


def name(m):
    return "::".join(m) or "crate"


def main():
    show = "--graph" in sys.argv
    bad = 0
    for src in sorted(ROOT.glob("crates/*/src")):
        graph = edges(modules(src))
        crate = src.parent.name
        if show:
            for m in sorted(graph):
                print(f"{crate}: {name(m)} -> {', '.join(name(t) for t in sorted(graph[m])) or '-'}")
        # Between files, then between top-level modules (a folder counts as one: `commands` <-> `drill`).
        top = {}
        for m, targets in graph.items():
            top.setdefault(m[:1], set()).update(t[:1] for t in targets if t[:1] != m[:1])
        seen = set()
        for c in cycles(graph) + cycles(top):
            key = tuple(c)
            if key in seen:
                continue
            seen.add(key)
            bad += 1
            print(f"{crate}: import cycle between " + ", ".join(name(m) for m in c))
    print(f"module import cycles: {bad}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
