"""``sekey [-o keyfile] [infile]``: write the SolarEdge encryption key from semonitor's -c answers."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Build the inverter's 16-byte encryption key (for semonitor -k) from semonitor's answers to the four
key parameters, read over RS232 with:

  semonitor -c 12,H239/12,H23a/12,H23b/12,H23c -s INVERTER_ID -t 2 /dev/ttyUSB0 -o key.json
  sekey -o INVERTER_ID.key key.json
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sekey", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", dest="keyfile", metavar="keyfile",
                   help="key file to write (owner-readable only); default: print the key")
    p.add_argument("infile", nargs="?", default="-",
                   help="semonitor -c output, one JSON line per answer (default: stdin)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from solarbridge.sources.solaredge.crypto import KEY_PARAMS
    from solarbridge.sources.solaredge.keyfile import KeyfileError, key_hex, values_from_lines, write_key_file

    try:
        if args.infile == "-":
            values = values_from_lines(sys.stdin)
        else:
            with open(args.infile, encoding="latin-1") as f:
                values = values_from_lines(f)
    except OSError as e:
        print(f"sekey: error: cannot read {args.infile}: {e.strerror}", file=sys.stderr)
        return 2
    except KeyfileError as e:
        print(f"sekey: error: {args.infile if args.infile != '-' else 'stdin'}: {e}", file=sys.stderr)
        return 2
    if args.keyfile:
        try:
            write_key_file(args.keyfile, values)
        except OSError as e:
            print(f"sekey: error: cannot write {args.keyfile}: {e.strerror}", file=sys.stderr)
            return 2
        for param, value in zip(KEY_PARAMS, values, strict=True):
            print(f"0x{param:04x} = 0x{value:08x} ({value})")
    else:
        print(key_hex(values))
    return 0


if __name__ == "__main__":
    sys.exit(main())
