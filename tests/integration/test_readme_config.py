#!/usr/bin/env python3
"""The README's configuration reference must be exactly what `tandemd --help-markdown` prints
from the option table, so the docs cannot drift from the code."""
import os
import subprocess
import sys

root = os.environ.get("TANDEM_SOURCE_DIR") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
bindir = os.environ.get("TANDEM_BIN_DIR") or os.path.join(root, "build")

passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {detail}")


generated = subprocess.run([os.path.join(bindir, "tandemd"), "--help-markdown"], check=True,
                           capture_output=True, text=True).stdout.strip()
readme = open(os.path.join(root, "README.md"), encoding="utf-8").read()
begin, end = "<!-- config:begin -->", "<!-- config:end -->"
check("README has the config markers", begin in readme and end in readme)
if begin in readme and end in readme:
    section = readme.split(begin, 1)[1].split(end, 1)[0].strip()
    check("README config table equals tandemd --help-markdown", section == generated,
          "regenerate it: tandemd --help-markdown, paste between the markers")
check("every option appears", all(line.startswith("| `") for line in generated.splitlines()[2:]))
print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
