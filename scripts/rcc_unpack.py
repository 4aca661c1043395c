"""Unpack Qt resource files (.rcc, as GCompris ships its activities' pictures) into a folder.

    python scripts/rcc_unpack.py OUT FILE.rcc [FILE.rcc ...]

Format (Qt's rcc, versions 1-3): a 20-byte header (magic "qres", version, then the offsets of the
tree, the data and the names, big-endian), a tree of 14-byte (v1) or 22-byte (v2+) nodes (name
offset, flags, then for a folder its child count and first child, for a file its locale and data
offset), names as length + hash + UTF-16BE, data as length + bytes, zlib-compressed (flag 1, after
a 4-byte size) or zstd-compressed (flag 4).
"""
from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

COMPRESSED, DIRECTORY, COMPRESSED_ZSTD = 1, 2, 4


def unpack(path: Path, out: Path) -> int:
    b = path.read_bytes()
    if b[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource file (no 'qres' magic)")
    version, tree, data, names = struct.unpack(">IIII", b[4:20])
    node = 22 if version >= 2 else 14

    def name(off: int) -> str:
        n, = struct.unpack(">H", b[names + off:names + off + 2])
        return b[names + off + 6:names + off + 6 + 2 * n].decode("utf-16-be")

    written = 0
    stack = [(0, out)]
    while stack:
        i, parent = stack.pop()
        p = tree + i * node
        name_off, flags = struct.unpack(">IH", b[p:p + 6])
        here = parent / name(name_off) if i else parent
        if flags & DIRECTORY:
            count, first = struct.unpack(">II", b[p + 6:p + 14])
            stack.extend((first + c, here) for c in range(count))
            continue
        q = data + struct.unpack(">I", b[p + 10:p + 14])[0]
        size, = struct.unpack(">I", b[q:q + 4])
        payload = b[q + 4:q + 4 + size]
        if flags & COMPRESSED:
            payload = zlib.decompress(payload[4:])
        elif flags & COMPRESSED_ZSTD:
            print(f"{path}: {here} is zstd-compressed; skipped", file=sys.stderr)
            continue
        here.parent.mkdir(parents=True, exist_ok=True)
        here.write_bytes(payload)
        written += 1
    return written


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    dest = Path(sys.argv[1])
    for f in sys.argv[2:]:
        print(f"{f}: {unpack(Path(f), dest)} files")
