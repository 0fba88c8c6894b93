"""se2csv: semonitor JSON lines to one CSV file per device type, ``<prefix>.<deviceType>.csv``."""

from __future__ import annotations

import argparse
import sys

from .jsonlines import InputError, JsonLines, add_help_argument, add_input_arguments, run

DESCRIPTION = ("Convert semonitor JSON lines to one CSV file per device type (inverters, optimizers, events, "
               "batteries_0x0030, meters_0x0022, ...), named <prefix>.<deviceType>.csv.")

_NAMED_DELIMITERS = {"\\t": "\t", "tab": "\t", "TAB": "\t", "space": " ", "comma": ",", "semicolon": ";",
                     "pipe": "|"}


def _delimiter(text: str) -> str:
    d = _NAMED_DELIMITERS.get(text, text)
    if len(d) != 1:
        raise argparse.ArgumentTypeError(
            f"the delimiter must be one character (got {text!r}); '\\t' or 'tab' means a tab")
    if d in "\"\r\n":
        raise argparse.ArgumentTypeError(f"{text!r} cannot be a delimiter (quote and newline are reserved)")
    return d


def build_parser() -> argparse.ArgumentParser:
    from ..sources.solaredge.converters import CSV_POLICY

    p = argparse.ArgumentParser(prog="se2csv", add_help=False, description=DESCRIPTION,
                                epilog=CSV_POLICY + " Rows end with CRLF and use minimal quoting, as "
                                "Python's csv module (and the original) writes them.")
    p.add_argument("-a", "--append", action="store_true", help="append to existing files instead of replacing them")
    p.add_argument("-d", "--delimiter", type=_delimiter, default=",",
                   help="field delimiter, one character; '\\t' or 'tab' for a tab (default: ',')")
    p.add_argument("-h", "-t", "--header", action="store_true", dest="header",
                   help="write a header row (with -a, only into a new or empty file)")
    p.add_argument("-p", "--prefix", help="prefix of the CSV file names, may include a directory "
                                          "(default: the input file name without .json; required for stdin)")
    for opt in ("-i", "-o", "-e"):
        p.add_argument(opt, dest=f"deprecated_{opt[1]}", metavar="FILE",
                       help="deprecated and ignored (the original's per-type file names); use -p")
    add_input_arguments(p)
    add_help_argument(p)
    return p


def convert(args: argparse.Namespace) -> int:
    from ..sources.solaredge.converters import CsvSet

    reader = JsonLines(args.infile, follow=args.follow, strict=args.strict,
                       progress=False if args.no_progress else None, prog="se2csv")
    for opt in ("i", "o", "e"):
        if getattr(args, f"deprecated_{opt}"):
            reader.warn(f'the -{opt} option is deprecated and ignored, use -p "csvFileNamePrefix" instead')
    prefix = args.prefix
    if not prefix:
        if args.infile == "-":
            raise InputError("-p PREFIX is required when reading stdin", exit_code=2)
        prefix = args.infile[:-5] if args.infile.endswith(".json") else args.infile
    out = CsvSet(prefix, delimiter=args.delimiter, header=args.header, append=args.append)
    reported = 0
    rows = 0
    try:
        for _lineno, obj in reader:
            rows += out.write_line(obj)
            while reported < len(out.widened):
                dev_type, cols = out.widened[reported]
                reported += 1
                reader.warn(f"{out.path_for(dev_type)}: new column(s) {', '.join(cols)} added at the end; "
                            "file rewritten with the wider header")
    finally:
        out.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run("se2csv", lambda: convert(args))


if __name__ == "__main__":
    sys.exit(main())
