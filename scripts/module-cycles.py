#!/usr/bin/env python3
"""Finds import loops between the modules of a Rust crate.

Usage: scripts/module-cycles.py <crate src dir> [...]

A module "uses" another when its code (not its comments) names a path into it: `crate::a::b`,
`super::x`, `self::y`, or a child module by its bare name (`child::f()`), in a `use` or inline. Naming one of its own ancestors or descendants counts too
(a child reaching back into its parent's items is a loop with the parent that declares it), but a `mod`
declaration or a re-export (`pub use`) does not. Every cycle in that graph is printed, and the exit status is 1 if there is any.
Shallow by design: it reads paths, not types or macros, so a cycle it reports is real; a crate it
passes may still hide a loop through a re-export or a path it cannot resolve.
"""

import os
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\}", re.S)


def modules(src):
    """Module path (tuple) -> file, for every .rs file under src."""
    found = {}
    for root, _, files in os.walk(src):
        for name in files:
            if not name.endswith(".rs"):
                continue
            path = os.path.join(root, name)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            if parts == ["main"] and os.path.exists(os.path.join(src, "lib.rs")):
                continue  # a binary beside a library is a crate of its own
            if parts[-1] in ("lib", "main", "mod"):
                parts = parts[:-1]
            found[tuple(parts)] = path
    return found


def code_of(path):
    """The file without comments, string literals and `#[cfg(test)] mod tests { … }`."""
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{.*\Z", "", text, flags=re.S)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'r#*"(?:.|\n)*?"#*', '""', text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    # Re-exports declare a module's interface, as `mod` declares its children: not a use.
    text = re.sub(r"\bpub(?:\([a-z]+\))?\s+use\s[^;]*;", "", text)
    return text


def resolve(module, anchor, rest, known):
    """The module a path names: the longest known module prefix of it."""
    if anchor == "crate":
        base = ()
    elif anchor == "self":
        base = module
    else:
        base = module
        segments = ["super"] + [s for s in rest.split("::") if s]
        rest_parts = []
        for segment in segments:
            if segment == "super" and not rest_parts:
                base = base[:-1]
            else:
                rest_parts.append(segment)
        rest = "::" + "::".join(rest_parts) if rest_parts else ""
    parts = [s for s in rest.split("::") if s]
    target = base
    for part in parts:
        if base + (part,) in known or target + (part,) in known:
            target = target + (part,)
        else:
            break
    return target


def edges(src):
    known = modules(src)
    graph = {module: set() for module in known}
    for module, path in known.items():
        code = code_of(path)
        names = []
        for anchor, prefix, group in USE_GROUP.findall(code):
            for item in group.split(","):
                item = item.strip().split(" as ")[0].strip()
                if item and item != "self" and re.match(r"^[A-Za-z_][A-Za-z0-9_:]*$", item):
                    names.append((anchor, prefix + "::" + item))
                elif item == "self":
                    names.append((anchor, prefix))
        code = USE_GROUP.sub("", code)
        names += PATH.findall(code)
        # A child module named without a prefix (`server::open(..)` in `routes/mod.rs`).
        for child in known:
            if len(child) == len(module) + 1 and child[: len(module)] == module:
                if re.search(r"(?<![:\w])" + child[-1] + r"::", code):
                    graph[module].add(child)
        for anchor, rest in names:
            target = resolve(module, anchor, rest, known)
            if target != module and target in known:
                graph[module].add(target)
    return graph


def cycles(graph):
    """Every elementary cycle, once (Johnson-style search bounded by node order)."""
    nodes = sorted(graph)
    order = {node: i for i, node in enumerate(nodes)}
    found = []

    def walk(start, node, path, on_path):
        for next_node in sorted(graph[node]):
            if next_node == start:
                found.append(path[:])
            elif order[next_node] > order[start] and next_node not in on_path:
                on_path.add(next_node)
                path.append(next_node)
                walk(start, next_node, path, on_path)
                path.pop()
                on_path.discard(next_node)

    for start in nodes:
        walk(start, start, [start], {start})
    return found


def name(module):
    return "::".join(module) or "crate"


def main(dirs):
    failed = False
    for src in dirs:
        for cycle in cycles(edges(src)):
            failed = True
            print(f"{src}: {' -> '.join(name(m) for m in cycle + [cycle[0]])}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
