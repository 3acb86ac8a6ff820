#!/usr/bin/env python3
"""Writes LLD's symbol ordering file for sluice from callgrind runs (see symbol-order.sh).

Usage: symbol_order.py MAP BINARY OUT RUN.callgrind [RUN.callgrind ...]

MAP is the linker map of BINARY (`SLUICE_LINK_MAP`) and each callgrind file a run (or part of
a run) of it with `--dump-instr=yes --compress-pos=no --compress-strings=no` (callgrind writes
addresses as in the file, for a position-dependent or -independent binary alike, so they match
the map). Every code section that holds an executed instruction is named by its first symbol,
grouped by the first run that executed it, in the order the runs are given (symbol-order.sh:
idle after start-up, OTLP traffic, start-up only); each group in the binary's current order.
"""
import bisect
import re
import sys

MAP_LINE = re.compile(r"^\s*([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\d+( +)(\S.*)$")


def code_sections(map_path):
    """[(start, size, symbol)] of the input sections placed in .text, by address.

    LLD's map indents output sections by one space after the alignment column and input
    sections (`file:(section)`) by nine. Code is compiled with a section per function, named
    `.text.SYMBOL` (or `.text.unlikely.SYMBOL`, ... by how hot the compiler thinks it is); the
    symbol is taken from there, as the map's own symbol lines are demangled."""
    sections, in_text, unnamed = [], False, None
    with open(map_path, errors="replace") as f:
        for line in f:
            m = MAP_LINE.match(line.rstrip("\n"))
            if not m:
                continue
            address, size, indent, name = int(m.group(1), 16), int(m.group(2), 16), len(m.group(3)), m.group(4)
            if unnamed is not None and indent > 9:
                # A plain `.text` (C built without a section per function, assembly, the C
                # runtime's `_start`) is named by its first symbol, which the map lists
                # next, undemangled as it is C.
                start, length = sections[unnamed][0], sections[unnamed][1]
                sections[unnamed] = (start, length, name)
                unnamed = None
                continue
            unnamed = None
            if indent == 1:
                in_text = name == ".text"
            elif in_text and indent == 9 and name.endswith(")"):
                section = name[name.rfind(":(") + 2:-1]
                symbol = None
                for prefix in (".text.unlikely.", ".text.hot.", ".text.startup.", ".text.exit.",
                               ".text.split.", ".text."):
                    if section.startswith(prefix):
                        symbol = section[len(prefix):]
                        break
                if section == ".text":
                    unnamed = len(sections)
                sections.append((address, size, symbol))
    sections.sort()
    return sections


def executed(callgrind_path, binary):
    """(instruction addresses, function entry addresses) a callgrind run executed in BINARY.

    In a stripped binary callgrind names each function by its entry address."""
    addresses, entries, current_ob, in_binary = set(), set(), None, False
    with open(callgrind_path, errors="replace") as f:
        for line in f:
            if line.startswith("ob="):
                current_ob = line[3:].strip()
            elif line.startswith("fn="):
                in_binary = current_ob == binary
                if in_binary and line.startswith("fn=0x"):
                    entries.add(int(line[3:].split("'")[0], 16))
            elif in_binary and line.startswith("0x"):
                addresses.add(int(line.split(None, 1)[0], 16))
    return addresses, entries


def main():
    map_path, binary, out, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    sections = code_sections(map_path)
    starts = [s[0] for s in sections]
    start_set = set(starts)
    groups, seen = [], set()
    for run in runs:
        hit = set()
        addresses, entries = executed(run, binary)
        # Entry points must be section starts, or the map belongs to another build.
        aligned = len(entries & start_set)
        if not entries or aligned < 0.9 * len(entries):
            sys.exit(f"{run}: {aligned} of {len(entries)} functions start where {map_path} "
                     "has a section: the map and the runs are of different builds")
        for address in addresses:
            i = bisect.bisect_right(starts, address) - 1
            if i >= 0 and address < sections[i][0] + sections[i][1] and sections[i][2]:
                hit.add(i)
        groups.append(sorted(hit - seen))
        seen |= hit
    with open(out, "w") as f:
        for group in groups:
            for i in group:
                f.write(sections[i][2] + "\n")
    sizes = [sum(sections[i][1] for i in g) for g in groups]
    print(f"{sum(map(len, groups))} sections ({', '.join(f'{s / 1024:.0f} KiB' for s in sizes)} "
          f"of {sum(s[1] for s in sections) / 1024:.0f} KiB of code) -> {out}")


if __name__ == "__main__":
    main()
