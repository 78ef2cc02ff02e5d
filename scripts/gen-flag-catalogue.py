#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Compile src/lib/patch/flagged-paths.txt into a C table (patch_flag_rules[]).

Usage: gen-flag-catalogue.py INPUT OUTPUT. A malformed line fails the build, naming the line.
"""
import re
import sys

GLOB = re.compile(r"^[a-z0-9._*?+/-]+$")


def c_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main():
    src, out = sys.argv[1], sys.argv[2]
    rules, group, seen = [], None, set()
    with open(src, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            where = f"{src}:{n}"
            m = re.fullmatch(r"\[([a-z0-9 -]+)\]", line)
            if m:
                group = m.group(1)
                continue
            parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
            if group is None or len(parts) != 2:
                sys.exit(f"{where}: expected 'GLOB  WHY' inside a [group]")
            glob, why = parts
            if not GLOB.match(glob) or "***" in glob or glob.startswith("/") or glob.endswith("/"):
                sys.exit(f"{where}: glob '{glob}' must be lower-case ASCII [a-z0-9._*?+/-], relative")
            if "**" in glob and any(ch in glob.split("/")[0] for ch in "*?"):
                sys.exit(f"{where}: a glob with '**' must start with a literal component (matching stays linear)")
            if glob in seen:
                sys.exit(f"{where}: glob '{glob}' listed twice")
            if not why.isascii() or '"' in why:
                sys.exit(f"{where}: the reason must be ASCII without quotes")
            seen.add(glob)
            rules.append((glob, group, why))
    if len(rules) < 50:
        sys.exit(f"{src}: only {len(rules)} entries; the catalogue was cut")
    with open(out, "w", encoding="utf-8") as f:
        f.write("/* Generated from src/lib/patch/flagged-paths.txt by scripts/gen-flag-catalogue.py. */\n")
        f.write('#include "patch-flags.h"\n\n')
        f.write("const PatchFlagRule patch_flag_rules[] = {\n")
        for glob, group, why in rules:
            f.write(f"        {{ {c_string(glob)}, {c_string(group)}, {c_string(why)} }},\n")
        f.write("};\n")
        f.write(f"const size_t patch_flag_rules_n = {len(rules)};\n")


if __name__ == "__main__":
    main()
