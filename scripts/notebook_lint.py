"""Check the notebooks' habits: small cells, the one set-up cell, sections.

Every notebook must
  * open with the `:dep` cell (its first code cell holds only `:dep`/`:` commands), followed by
    the set-up cell: `use avr_modularity::prelude::*;`, `let study = Study::setup(…)…;` and
    `study` as its last line;
  * have at least one `##` markdown section heading;
and no code cell may
  * hold more than 8 lines (trailing blank lines not counted),
  * hold a line longer than 100 columns (the `:dep` cell is exempt: its lines cannot be split),
  * use `std::env::var` (the `Study` reads the `AVR_*` variables once) or `size.pick`
    (use `study.pick`, or a preset such as `study.train_config()`),
  * use `match` at the top level of the cell, i.e. outside every `{ … }` block (handle a
    `Result` with `.expect("…")`, choose by run size with a preset or `study.pick`).
Comments and string literals are ignored when looking for these words.

usage: notebook_lint.py [--max-lines N] [--max-cols N] [NOTEBOOK ...]   (default notebooks/*.ipynb)
Prints one summary row per notebook and every problem with its cell; exit status 1 when any
notebook has a problem, else 0.
"""
import argparse
import glob
import json
import os
import re
import sys

SETUP_IMPORT = "use avr_modularity::prelude::*;"
SETUP_CALL = re.compile(r"\blet\s+study\s*=\s*Study::setup\s*\(")
SETUP_DISPLAY = "study"
FORBIDDEN = [
    (re.compile(r"\bstd\s*::\s*env\s*::\s*var"), "uses std::env::var (read paths and sizes from `study`)"),
    (re.compile(r"\bsize\s*\.\s*pick\b"), "uses size.pick (use a preset, or study.pick sparingly)"),
]


def source_of(cell):
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def code_lines(source):
    """The cell's lines without trailing blank ones."""
    lines = source.split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def blank_out_comments_and_strings(source):
    """`source` with every comment and string/char literal replaced by spaces (newlines kept),
    so that keyword and brace scans see code only. Handles nested block comments, escapes,
    raw strings (`r"…"`, `r#"…"#`, `br"…"`) and tells char literals from lifetimes."""
    out, i, n = [], 0, len(source)

    def blank(text):
        out.append("".join("\n" if c == "\n" else " " for c in text))

    while i < n:
        c = source[i]
        if source.startswith("//", i):
            j = source.find("\n", i)
            j = n if j < 0 else j
            blank(source[i:j])
            i = j
        elif source.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if source.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif source.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(source[i:j])
            i = j
        elif (m := re.match(r'b?r(#*)"', source[i:])) and (i == 0 or not (source[i - 1].isalnum() or source[i - 1] == "_")):
            end = '"' + m.group(1)
            j = source.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            blank(source[i:j])
            i = j
        elif c == '"':
            j = i + 1
            while j < n and source[j] != '"':
                j += 2 if source[j] == "\\" else 1
            blank(source[i : j + 1])
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]+\}|.)|[^\\'\n])'", source[i:])
            if m:  # a char literal; otherwise a lifetime or label, left as it is
                blank(m.group(0))
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def top_level_matches(code_only):
    """Line numbers (from 1) where `match` appears outside every `{ … }` block."""
    found, depth = [], 0
    for m in re.finditer(r"\{|\}|\bmatch\b", code_only):
        token = m.group(0)
        if token == "{":
            depth += 1
        elif token == "}":
            depth = max(depth - 1, 0)
        elif depth == 0:
            found.append(code_only.count("\n", 0, m.start()) + 1)
    return found


def is_command_cell(lines):
    """A cell of evcxr commands only (`:dep …`, `:opt …`), with at least one `:dep`."""
    body = [l.strip() for l in lines if l.strip() and not l.strip().startswith("//")]
    return bool(body) and all(l.startswith(":") for l in body) and any(l.startswith(":dep") for l in body)


def check_setup_cell(lines):
    """What the set-up cell lacks (empty when it is right)."""
    code = [l.strip() for l in lines if l.strip() and not l.strip().startswith("//")]
    missing = []
    if SETUP_IMPORT not in code:
        missing.append(f"`{SETUP_IMPORT}`")
    if not any(SETUP_CALL.search(l) for l in code):
        missing.append("`let study = Study::setup(…)`")
    if not code or code[-1] != SETUP_DISPLAY:
        missing.append("`study` as its last line (it displays the run as a table)")
    return missing


def lint(path, max_lines, max_cols):
    """(summary row, problems) of one notebook; problems are (cell index, text)."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    cells = nb.get("cells", [])
    problems = []
    code_cells = [(i, code_lines(source_of(c))) for i, c in enumerate(cells) if c.get("cell_type") == "code"]
    headings = [
        l for c in cells if c.get("cell_type") == "markdown" for l in source_of(c).splitlines() if re.match(r"##(?!#)\s+\S", l)
    ]
    if not headings:
        problems.append((None, "no `##` markdown section heading"))

    dep_index = None
    if not code_cells:
        problems.append((None, "no code cells"))
    elif not is_command_cell(code_cells[0][1]):
        problems.append((code_cells[0][0], "the first code cell must be the `:dep` cell"))
    else:
        dep_index = code_cells[0][0]
        if len(code_cells) < 2:
            problems.append((None, "no set-up cell after the `:dep` cell"))
        else:
            index, lines = code_cells[1]
            missing = check_setup_cell(lines)
            if missing:
                problems.append((index, "the cell after `:dep` must be the set-up cell; it lacks " + ", ".join(missing)))

    worst_lines, worst_cols = 0, 0
    for index, lines in code_cells:
        worst_lines = max(worst_lines, len(lines))
        if len(lines) > max_lines:
            problems.append((index, f"{len(lines)} lines (at most {max_lines})"))
        if index != dep_index:
            for number, line in enumerate(lines, 1):
                worst_cols = max(worst_cols, len(line))
                if len(line) > max_cols:
                    problems.append((index, f"line {number} has {len(line)} columns (at most {max_cols}): {line.strip()[:60]}…"))
        code_only = blank_out_comments_and_strings("\n".join(lines))
        for pattern, text in FORBIDDEN:
            for m in pattern.finditer(code_only):
                number = code_only.count("\n", 0, m.start()) + 1
                problems.append((index, f"line {number} {text}"))
        for number in top_level_matches(code_only):
            problems.append((index, f"line {number} uses `match` at the top level (use expect, a preset or study.pick)"))
    row = {
        "notebook": path,
        "code cells": len(code_cells),
        "max lines": worst_lines,
        "max cols": worst_cols,
        "status": "FAIL" if problems else "ok",
    }
    return row, problems


def print_table(rows):
    columns = ["notebook", "code cells", "max lines", "max cols", "status"]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    line = "  ".join(c.ljust(widths[c]) if c == "notebook" else c.rjust(widths[c]) for c in columns)
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) if c == "notebook" else str(r[c]).rjust(widths[c]) for c in columns))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", help="notebooks to check (default notebooks/*.ipynb)")
    parser.add_argument("--max-lines", type=int, default=8, help="most lines in a code cell (default 8)")
    parser.add_argument("--max-cols", type=int, default=100, help="most columns in a line (default 100)")
    args = parser.parse_args()
    paths = args.notebooks
    if not paths:
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "notebooks")
        paths = [os.path.relpath(p) for p in sorted(glob.glob(os.path.join(os.path.normpath(root), "*.ipynb")))]
    if not paths:
        print("notebook_lint: no notebooks to check")
        return 1
    rows, failed = [], False
    for path in paths:
        try:
            row, problems = lint(path, args.max_lines, args.max_cols)
        except (OSError, ValueError) as e:
            row = {"notebook": path, "code cells": "-", "max lines": "-", "max cols": "-", "status": "FAIL"}
            problems = [(None, f"cannot read the notebook: {e}")]
        rows.append(row)
        for cell, text in problems:
            failed = True
            where = f"cell {cell}" if cell is not None else "notebook"
            print(f"[lint] {path}: {where}: {text}")
    if failed:
        print()
    print_table(rows)
    print(f"\nnotebook_lint: {'FAIL' if failed else 'ok'} (code cells ≤ {args.max_lines} lines, lines ≤ {args.max_cols} columns)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
