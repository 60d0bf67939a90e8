#!/usr/bin/env python3
"""Fails when the folders of daemon/ include each other in a circle.

A folder uses another when one of its files includes "other/...". The folders must form
layers (docs/architecture.md, "Layout"): for every circle, this prints the includes that make
it, file and line, so that the one that goes the wrong way can be moved.
Usage: folder_cycles.py SOURCE_DIR
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"/]+)/[^"]+"')


def folder_includes(daemon: Path) -> dict:
    """(from folder, to folder) -> the includes, as "file:line: #include ..."."""
    folders = {p.name for p in daemon.iterdir() if p.is_dir()}
    edges = defaultdict(list)
    for folder in sorted(folders):
        for source in sorted((daemon / folder).rglob("*")):
            if source.suffix not in (".cpp", ".hpp", ".h", ".c"):
                continue
            lines = source.read_text(encoding="utf-8").splitlines()
            for number, line in enumerate(lines, 1):
                match = INCLUDE.match(line)
                if match and match[1] in folders and match[1] != folder:
                    where = source.relative_to(daemon.parent)
                    edges[(folder, match[1])].append(f"{where}:{number}: {line.strip()}")
    return edges


def circles(edges: dict) -> list:
    """The strongly connected components of more than one folder (Tarjan's algorithm)."""
    graph = defaultdict(list)
    for a, b in edges:
        graph[a].append(b)
        graph.setdefault(b, [])
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def shortest_circle(edges: dict, component: list) -> list:
    """The folders of a shortest circle within a component, first one repeated last."""
    best = None
    for start in component:
        paths = {start: [start]}
        queue = [start]
        while queue:
            node = queue.pop(0)
            for a, b in sorted(edges):
                if a != node or b not in component:
                    continue
                if b == start:
                    if best is None or len(paths[node]) + 1 < len(best):
                        best = paths[node] + [start]
                elif b not in paths:
                    paths[b] = paths[node] + [b]
                    queue.append(b)
    return best


def main() -> int:
    daemon = Path(sys.argv[1]) / "daemon"
    edges = folder_includes(daemon)
    found = circles(edges)
    for component in found:
        circle = shortest_circle(edges, component)
        print(f"include cycle between the folders of daemon/: {' -> '.join(circle)}"
              f" (in a circle of {', '.join(component)})")
        for a, b in zip(circle, circle[1:]):
            print(f"  {a} -> {b}:")
            for include in edges[(a, b)]:
                print(f"    {include}")
    if found:
        print("move what both sides need into a lower folder (docs/architecture.md, \"Layout\")")
        return 1
    uses = defaultdict(set)
    for a, b in edges:
        uses[a].add(b)
    print("folder_cycles: no include cycle between the folders of daemon/")
    for folder in sorted(uses):
        print(f"  {folder} -> {', '.join(sorted(uses[folder]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
