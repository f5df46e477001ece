"""What both graph mappers share: the walk over a captured program's nodes in order, the names and
values of its parameters, the fixed-shape check, running the captured program, the operator census."""

from __future__ import annotations

import torch

from .errors import unsupported
from .source import ImportedSource

__all__ = ["GraphWalker", "captured_outputs", "operator_census"]


class GraphWalker:
    """Gives every node of ``ep``'s graph a tag (``self.tag[node]``): user inputs ``input_tag``,
    parameters, buffers and constants ``("param", state name)``, every call what the subclass's
    ``visit(node)`` returns; the output node goes to ``output(node)``."""

    def __init__(self, ep: torch.export.ExportedProgram) -> None:
        self.ep = ep
        sig = ep.graph_signature
        self.names = {**sig.inputs_to_parameters, **sig.inputs_to_buffers,
                      **getattr(sig, "inputs_to_lifted_tensor_constants", {})}
        self.tag: dict = {}

    def value(self, name: str) -> torch.Tensor:
        """A parameter's, buffer's or constant's tensor by its state name."""
        return (self.ep.state_dict[name] if name in self.ep.state_dict else self.ep.constants[name]).detach()

    def arg(self, node, i: int = 0):
        """The tag of ``node``'s argument ``i``; a literal is ``("const", value)``."""
        a = node.args[i]
        return self.tag.get(a) if isinstance(a, torch.fx.Node) else ("const", a)

    def walk(self, input_tag: tuple) -> None:
        user = set(self.ep.graph_signature.user_inputs)
        for node in self.ep.graph.nodes:  # shapes first: a dynamic one is the root cause of what follows
            val = node.meta.get("val")
            for v in val if isinstance(val, (list, tuple)) else [val]:
                if isinstance(v, torch.Tensor) and any(not isinstance(d, int) for d in v.shape):
                    raise unsupported(node, f"dynamic shape {tuple(v.shape)} from {node.target}",
                                      "the accelerators need every shape fixed")
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                self.tag[node] = input_tag if node.name in user else ("param", self.names.get(node.target,
                                                                                              node.target))
            elif node.op == "output":
                self.output(node)
            elif node.op == "call_function":
                if getattr(node.target, "__name__", str(node.target)).startswith(("_assert", "sym_")):
                    continue
                self.tag[node] = self.visit(node)
            else:
                raise unsupported(node, f"graph node of kind {node.op}")

    def visit(self, node):
        raise NotImplementedError

    def output(self, node) -> None:
        raise NotImplementedError


def captured_outputs(src: ImportedSource, x: torch.Tensor) -> torch.Tensor:
    """The captured program on ``x`` ``[images, *input_shape]``, one image at a time (the program is
    captured for its own batch size); of nested outputs, the first tensor."""
    run = src.program.module()
    outs = []
    with torch.no_grad():
        for xi in x:
            r = run(xi)
            while isinstance(r, (list, tuple)):
                r = r[0]
            outs.append(r)
    return torch.cat(outs)


def operator_census(ep: torch.export.ExportedProgram) -> dict[str, int]:
    """How many of each operator the captured graph holds."""
    census: dict[str, int] = {}
    for node in ep.graph.nodes:
        if node.op == "call_function":
            k = getattr(node.target, "__name__", str(node.target))
            census[k] = census.get(k, 0) + 1
    return census
