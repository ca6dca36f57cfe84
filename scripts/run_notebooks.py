"""Execute evcxr notebooks headless and FAIL on any cell error.

evcxr reports compile errors and crashed children as cell errors, but a panic (unless
`preserve_vars_on_panic = false`) and a top-level `?` error only print to stderr and return
"ok". So besides nbclient's CellExecutionError this runner scans every cell's stderr for
`panicked at` and `EVCXR_ERROR` (and refuses any other stderr output: Jupyter shows it as a red
error block), every output for an `error` entry, and refuses code cells
that use `?` at the top level (evcxr prints such an error and carries on; use `expect`).

usage: run_notebooks.py [--out DIR] [--html] NOTEBOOK...
Each executed notebook is written to DIR/<name>.ipynb (and DIR/<name>.html with --html).
Exit status: 0 when every notebook ran cleanly, 1 otherwise (all notebooks are still run).
"""
import argparse
import json
import os
import sys
import time

import re

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

FAILURE_MARKERS = ("panicked at", "EVCXR_ERROR", "Subprocess terminated")


TOP_LEVEL_QUESTION_MARK = re.compile(r"\?\s*(;|\)|\.|$)")


def top_level_question_marks(source):
    """Lines of a code cell that apply `?` outside any block (brace depth 0)."""
    depth, found = 0, []
    for line in source.splitlines():
        code = re.sub(r'"(\\.|[^"\\])*"', '""', line.split("//")[0])
        if depth == 0 and not code.lstrip().startswith(":") and TOP_LEVEL_QUESTION_MARK.search(code):
            found.append(line.strip())
        depth += code.count("{") - code.count("}")
    return found


def problems_in(nb):
    """Every sign of failure in an executed notebook, as (cell index, text)."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            for line in top_level_question_marks(cell.source):
                found.append((index, f"top-level `?` (evcxr swallows the error; use expect): {line}"))
        stderr = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stderr")
        lines = stderr.splitlines()
        for n, line in enumerate(lines):
            if any(marker in line for marker in FAILURE_MARKERS):
                message = next((l.strip() for l in lines[n + 1 : n + 3] if l.strip()), "")
                found.append((index, f"stderr: {line.strip()} {message}".strip()))
                break
        else:
            # Jupyter paints stderr as a red error block: progress and notes belong on stdout.
            if stderr.strip():
                found.append((index, f"stderr output (shown as a red block): {lines[0].strip()[:120]}"))
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append((index, f"error {out.get('ename')}: {out.get('evalue')}"))
    return found


def run_one(path, out_dir, html, timeout):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="rust",
        timeout=timeout,
        startup_timeout=600,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(path))}},
    )
    start = time.time()
    failures = []
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as e:
        first = str(e).strip().splitlines()
        failures.append((None, f"{type(e).__name__}: {first[-1] if first else ''}"))
    failures += problems_in(nb)
    elapsed = time.time() - start
    name = os.path.splitext(os.path.basename(path))[0]
    if out_dir:
        # A failed run never replaces a notebook's outputs (`make notebooks-full` writes into
        # notebooks/ itself): it goes beside them as NAME.failed.ipynb, for reading the error.
        stem = os.path.join(out_dir, name + (".failed" if failures else ""))
        os.makedirs(out_dir, exist_ok=True)
        write_atomically(stem + ".ipynb", nbformat.writes(nb))
        if html:
            from nbconvert import HTMLExporter

            body, _ = HTMLExporter().from_notebook_node(nb)
            write_atomically(stem + ".html", body)
        if not failures:  # an earlier failure's copy would now mislead
            for ext in (".ipynb", ".html"):
                stale = os.path.join(out_dir, name + ".failed" + ext)
                if os.path.exists(stale):
                    os.remove(stale)
    return failures, elapsed


def write_atomically(path, text):
    """Writes `text` to a temporary file beside `path`, then renames it over `path`."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--out", help="folder for executed notebooks (a failed one: NAME.failed.ipynb)")
    parser.add_argument("--html", action="store_true", help="also write HTML next to each executed notebook")
    parser.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line per notebook")
    args = parser.parse_args()
    failed = False
    for path in args.notebooks:
        failures, elapsed = run_one(path, args.out, args.html, args.timeout)
        failed |= bool(failures)
        status = "FAIL" if failures else "ok"
        if args.json:
            print(json.dumps({"notebook": path, "status": status, "seconds": round(elapsed, 1), "failures": [f for _, f in failures]}))
        else:
            print(f"[notebooks] {status:4} {path} ({elapsed:.1f} s)")
            for cell, text in failures:
                where = f"cell {cell}" if cell is not None else "run"
                print(f"[notebooks]      {where}: {text}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
