#!/usr/bin/env python3
"""Lists the lengths of the Rust functions under a folder (default operator/src), longest first,
as `<lines> <path>:<line> <name>`, leaving out test code: files named `tests.rs` or `*_tests.rs`,
files under a `tests/` folder, modules declared `#[cfg(test)]` (inline or in a file of their own)
and functions marked `#[test]`. A function's length runs from its `fn` line to its closing brace.

    fn-lengths.py [--root DIR] [--max N] [--allow PREFIX ...] [--top K]

With --max, exits 1 when a function outside the allowed path prefixes is longer than N lines
(the check `make lint` runs), and names the allowed ones still longer than N on stderr.
"""

import argparse
import re
import sys
from pathlib import Path


def blank_literals(text):
    """The text with comments, strings and char literals replaced by spaces (newlines kept), so
    that braces can be counted."""
    out, i, n = [], 0, len(text)

    def skip_to(j):
        out.append("".join(c if c == "\n" else " " for c in text[i:j]))
        return j

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = skip_to(n if j < 0 else j)
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            i = skip_to(j)
        elif m := re.compile(r'b?r(#*)"').match(text, i):
            end = text.find('"' + m.group(1), m.end())
            i = skip_to(n if end < 0 else end + 1 + len(m.group(1)))
        elif c == '"' or text.startswith('b"', i):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = skip_to(j + 1)
        elif m := re.compile(r"b?'(\\.[^']*|[^\\'])'").match(text, i):
            i = skip_to(m.end())
        else:
            out.append(c)
            i += 1
    return "".join(out)


def closing_brace(code, open_at):
    """Index of the brace that closes the one at `open_at`."""
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code) - 1


def body_start(code, after):
    """Index of a function's opening brace, or None for a declaration without a body."""
    depth = 0
    for j in range(after, len(code)):
        c = code[j]
        if c in "([<":
            depth += 1
        elif c in ")]>" and depth:
            depth -= 1
        elif c == "{" and depth == 0:
            return j
        elif c == ";" and depth == 0:
            return None
    return None


TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*([{;])")
FN = re.compile(r"\bfn\s+(\w+)")


def test_ranges(code):
    """Character ranges of inline `#[cfg(test)] mod x { ... }` blocks, and names of `mod x;`."""
    ranges, files = [], []
    for m in TEST_MOD.finditer(code):
        if m.group(2) == "{":
            ranges.append((m.start(), closing_brace(code, m.end() - 1)))
        else:
            files.append(m.group(1))
    return ranges, files


def module_dir(path):
    """The folder holding the files of `path`'s child modules."""
    return path.parent if path.name in ("mod.rs", "lib.rs", "main.rs") else path.with_suffix("")


def is_test_file(path, test_files):
    return path.name == "tests.rs" or path.name.endswith("_tests.rs") or "tests" in path.parts or path in test_files


def functions(path, code, skip):
    """(name, first line, length) of each function in `code` outside the test ranges."""
    for m in FN.finditer(code):
        if any(a <= m.start() <= b for a, b in skip):
            continue
        if re.search(r"#\[(?:tokio::)?test[^\]]*\]\s*(?:#\[[^\]]*\]\s*)*(?:\w+\s+)*$", code[max(0, m.start() - 300) : m.start()]):
            continue
        start = body_start(code, m.end())
        if start is None:
            continue
        first = code.count("\n", 0, m.start()) + 1
        last = code.count("\n", 0, closing_brace(code, start)) + 1
        yield m.group(1), first, last - first + 1


def scan(root):
    paths = sorted(Path(root).rglob("*.rs"))
    parsed = {p: blank_literals(p.read_text()) for p in paths}
    test_files, ranges = set(), {}
    for p, code in parsed.items():
        ranges[p], names = test_ranges(code)
        for name in names:
            test_files.update({module_dir(p) / f"{name}.rs", module_dir(p) / name / "mod.rs"})
    for p, code in parsed.items():
        if not is_test_file(p, test_files):
            for name, line, length in functions(p, code, ranges[p]):
                yield length, f"{p}:{line}", name


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="operator/src")
    parser.add_argument("--max", type=int)
    parser.add_argument("--allow", action="append", default=[], help="path prefix whose functions may be longer")
    parser.add_argument("--top", type=int, default=20, help="how many to list without --max")
    args = parser.parse_args()
    found = sorted(scan(args.root), key=lambda f: (-f[0], f[1]))
    if args.max is None:
        for length, where, name in found[: args.top]:
            print(f"{length:5} {where} {name}")
        return 0
    long = [f for f in found if f[0] > args.max]
    allowed = [f for f in long if any(f[1].startswith(a) for a in args.allow)]
    for length, where, name in allowed:
        print(f"allowed for now: {length} lines {where} {name}", file=sys.stderr)
    failing = [f for f in long if f not in allowed]
    for length, where, name in failing:
        print(f"{where}: fn {name} is {length} lines (at most {args.max}); split it", file=sys.stderr)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
