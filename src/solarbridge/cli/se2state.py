"""se2state: follow semonitor JSON lines and keep a state file with the latest inverter and optimizer values."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .jsonlines import InputError, JsonLines, add_help_argument, add_input_arguments, run

DESCRIPTION = ("Follow semonitor JSON lines and keep a JSON state file with the latest record of every "
               "inverter and optimizer plus totals (stats). The file is atomically replaced after every "
               "line, so a reader never sees a partial file.")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="se2state", add_help=False, description=DESCRIPTION,
                                epilog="By default the input is followed like tail -f (as the original); "
                                       "a pipe is read until its writer closes it.")
    p.add_argument("-o", "--output", default="state.json", metavar="STATEFILE",
                   help="state file to keep (default: state.json); its values are loaded at start")
    p.add_argument("-i", "--init", metavar="INV1,INV2", default=None,
                   help="start from zeroed state for these inverter ids instead of loading the state file")
    p.add_argument("--once", action="store_true", help="stop at the end of the input instead of following it")
    p.add_argument("--poll", type=float, default=0.1, help="seconds between checks for new input (default: 0.1)")
    add_input_arguments(p, follow_default=True)
    add_help_argument(p)
    return p


def keep_state(args: argparse.Namespace) -> int:
    from ..sources.solaredge.converters import SeState

    out = Path(args.output)
    dirty = [False]
    reader_ref: list[JsonLines] = []

    def warn(msg: str) -> None:
        if reader_ref:
            reader_ref[0].warn(msg)
        else:
            print(f"se2state: {msg}", file=sys.stderr)

    if not out.parent.exists():
        raise InputError(f"cannot write {out}: directory {out.parent} does not exist", exit_code=2)
    if args.init is not None:
        state = SeState.initial([x.strip() for x in args.init.split(",")])
        state.save(out, fsync=True)
    elif out.exists():
        try:
            loaded = json.loads(out.read_text(encoding="utf-8"))
            if not isinstance(loaded, dict):
                raise ValueError("not a JSON object")
            state = SeState(loaded)
        except (ValueError, UnicodeDecodeError) as e:
            warn(f"{out}: existing state unreadable ({e}); starting from empty state")
            state = SeState()
    else:
        state = SeState()

    def on_idle() -> None:
        # caught up with the input: make the latest state durable, not only atomic
        if dirty[0]:
            state.save(out, fsync=True)
            dirty[0] = False

    reader = JsonLines(args.infile, follow=not args.once, poll=args.poll, strict=args.strict,
                       progress=False if args.no_progress else None, prog="se2state", on_idle=on_idle)
    reader_ref.append(reader)
    try:
        for _lineno, obj in reader:
            if state.update(obj):
                state.save(out, fsync=False)
                dirty[0] = True
    finally:
        on_idle()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run("se2state", lambda: keep_state(args))


if __name__ == "__main__":
    sys.exit(main())
