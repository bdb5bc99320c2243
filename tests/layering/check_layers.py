#!/usr/bin/env python3
"""The layering check: storage <- consensus <- replication <- node, with no include cycles.

Fails (exit 1, one line per finding on stderr) when
  - a product file includes a header of a layer above its own;
  - two sibling folders include each other, directly or around a longer loop (a layer's root
    folder hosts its sub-folders: node/ may use node/http/ and be used by it, but node/http/,
    node/api/ and node/bcp/ must form no loop among themselves);
  - files include each other in a loop (a file and its header count as one unit).
Usage: check_layers.py [ROOT]   (ROOT defaults to the repository this script lives in)
"""
import os
import re
import sys

LAYERS = ["storage", "consensus", "replication", "node"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.MULTILINE)


def product_files(root):
    for layer in LAYERS:
        for directory, _, names in os.walk(os.path.join(root, layer)):
            for name in sorted(names):
                if name.endswith((".c", ".h")):
                    path = os.path.join(directory, name)
                    yield os.path.relpath(path, root).replace(os.sep, "/")


def layer_of(path):
    top = path.split("/", 1)[0]
    return LAYERS.index(top) if top in LAYERS else None


def unit_of(path):
    return path[: path.rfind(".")] if "." in path else path


def folder_of(path):
    return path.rsplit("/", 1)[0]


def hosted(a, b):
    """Whether one folder is the other's layer root (the root hosts its sub-folders)."""
    return a == b.split("/", 1)[0] or b == a.split("/", 1)[0]


def cycles(graph):
    """Tarjan's strongly connected components with more than one member, each sorted."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def check(root):
    problems = []
    units, folders = {}, {}
    for path in product_files(root):
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            text = f.read()
        for header in INCLUDE.findall(text):
            target_layer = layer_of(header)
            if target_layer is None:
                continue  # system, generated (tandem.pb-c.h) or same-folder-relative headers
            if target_layer > layer_of(path):
                problems.append(
                    f"{path}: includes {header}, a header of {LAYERS[target_layer]}/, "
                    f"which is above {LAYERS[layer_of(path)]}/ (order: {' <- '.join(LAYERS)})"
                )
            if unit_of(header) != unit_of(path):
                units.setdefault(unit_of(path), set()).add(unit_of(header))
            if folder_of(header) != folder_of(path) and not hosted(folder_of(header), folder_of(path)):
                folders.setdefault(folder_of(path), set()).add(folder_of(header))
    for component in cycles(folders):
        problems.append("sibling folders include each other in a loop: " + " <-> ".join(component))
    for component in cycles(units):
        problems.append("files include each other in a loop: " + " <-> ".join(component))
    return problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    problems = check(root)
    for p in problems:
        print(f"check_layers: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"check_layers: {sum(1 for _ in product_files(root))} files, "
          f"layers {' <- '.join(LAYERS)}, no upward include, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
