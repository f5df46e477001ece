"""``qsilicon flow``: the main job (``make demo``), and ``qsilicon demo``, its alias."""

from __future__ import annotations

__all__ = ["register"]


def cmd_flow(args) -> int:
    from ..pipeline import run_flow

    return run_flow(args.config, args.output)


def register(sub, groups) -> None:
    for name, what in (("flow", "the whole flow from a YAML config (default: the embedded one, = make demo)"),
                       ("demo", "the same as 'flow' (make demo)")):
        fl = sub.add_parser(name, help=what)
        fl.add_argument("config", nargs="?", default="default", help="flow YAML (default: flow/default_flow.yaml)")
        fl.add_argument("-o", "--output", help="output directory (default: the config's output)")
        fl.set_defaults(func=cmd_flow)
