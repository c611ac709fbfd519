"""The parameters of ``S`` identical models as one ``(S, P)`` tensor, and their batched gradients.

Two implementations share one interface (``flat``, ``gradients``, ``write_back``):

* :class:`LinearChainStack`, for models whose forward pass is a chain of ``Linear`` layers,
  element-wise activations, ``Dropout``, ``Flatten`` and ``Identity`` (the built-in ``mlp`` and
  most tabular attack models): each ``Linear`` of the ``S`` models is one ``torch.baddbmm`` over
  weights kept transposed, ``(S, in, out)``, so that the backward pass's weight gradient is the
  cache-friendly ``inputs^T @ grad`` product;
* :class:`VmapStack`, for any other ``torch.func``-compatible module: ``torch.func.vmap`` of
  ``torch.func.functional_call`` on a template module.

:func:`stack_models` picks the first that applies. Both compute, per model, the cross-entropy
of :func:`weighted_cross_entropy` and return the gradient of each model's loss in its row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import fx, nn
from torch.func import functional_call, vmap

__all__ = ["LinearChainStack", "VmapStack", "linear_chain", "stack_models", "weighted_cross_entropy"]

# Modules applied element by element: on a stacked (S, B, F) batch they do per model what they do on (B, F).
_ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid,
    nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus, nn.Identity, nn.Dropout,
)  # fmt: skip


def weighted_cross_entropy(logits: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """Cross-entropy weighted per row, summed: ``wb`` is ``1 / rows`` on a batch's real rows, 0 on padding.

    ``-log_softmax`` at the label is what ``cross_entropy(reduction="none")`` computes, bit for bit;
    written out, it avoids the slower decomposition of ``nll_loss`` under ``vmap``.
    """
    log_probs = logits.log_softmax(dim=-1)
    return -(log_probs.gather(-1, yb.unsqueeze(-1)).squeeze(-1) * wb).sum()


class _Stack:
    """What both stacks share: the ``(S, P)`` tensor and the copy back into the modules."""

    flat: torch.Tensor

    def __init__(self, models: Sequence[nn.Module], parameters: Sequence[Sequence[nn.Parameter]]) -> None:
        self.models = list(models)
        self.parameters = [list(ps) for ps in parameters]  # per model, in the stack's column order
        self.numels = [p.numel() for p in self.parameters[0]]
        self.flat = torch.stack([torch.cat([self._stored(p).reshape(-1) for p in ps]) for ps in self.parameters])

    def _stored(self, p: torch.Tensor) -> torch.Tensor:
        """How parameter ``p`` is laid out in its block of the stack."""
        return p.detach()

    def write_back(self) -> None:
        """Copy each model's row of the stack into its parameters and clear their gradients."""
        with torch.no_grad():
            for ps, row in zip(self.parameters, self.flat, strict=True):
                for p, part in zip(ps, torch.split(row, self.numels), strict=True):
                    p.copy_(self._loaded(part, p))
                    p.grad = None

    def _loaded(self, part: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`_stored`: the block ``part`` in ``p``'s own shape."""
        return part.view_as(p)


class VmapStack(_Stack):
    """Any ``torch.func``-compatible module, through ``vmap`` of ``functional_call`` on a template."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        self.template = models[0]
        named = list(self.template.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        super().__init__(models, [list(m.parameters()) for m in models])
        self._losses = vmap(self._loss, randomness="different")

    def gradients(self, flat: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        """Every model's gradient, ``(S, P)``, of its loss on its batch: row ``s`` of ``xb``, ``yb``, ``wb``.

        The forward pass is vmapped; the backward pass is ordinary autograd through the batched
        operations, of the *sum* of the ``S`` losses. The models share no parameters, so row ``s`` of
        that gradient is model ``s``'s own gradient (bit for bit what ``vmap(grad(loss))`` returns,
        with less per-step overhead).
        """
        with torch.enable_grad():
            leaf = flat.detach().requires_grad_()
            (gradient,) = torch.autograd.grad(self._losses(leaf, xb, yb, wb).sum(), leaf)
        return gradient

    def logits(self, flat: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """One model's logits: ``flat`` is its ``(P,)`` row of the stack."""
        parts = zip(self.names, torch.split(flat, self.numels), self.shapes, strict=True)
        params = {name: part.view(shape) for name, part, shape in parts}
        out: torch.Tensor = functional_call(self.template, params, (xb,))
        return out

    def _loss(self, flat: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        return weighted_cross_entropy(self.logits(flat, xb), yb, wb)


class LinearChainStack(_Stack):
    """Models whose forward pass is a :func:`linear_chain`, run as batched matrix products.

    A ``Linear`` weight is stored transposed, ``(in, out)``, in its block of the stack, so the
    forward product is ``baddbmm(bias, h, W^T)`` and the weight gradient autograd returns,
    ``h^T @ grad``, is contiguous without a transpose.
    """

    def __init__(self, models: Sequence[nn.Module], chain: Sequence[str]) -> None:
        chains = [[model.get_submodule(name) for name in chain] for model in models]
        self.layers = chains[0]  # model 0's modules; their hyper-parameters (and train mode) serve all
        per_model = [[p for layer in layers if isinstance(layer, nn.Linear) for p in _linear_params(layer)]
                     for layers in chains]  # fmt: skip
        super().__init__(models, per_model)

    def _stored(self, p: torch.Tensor) -> torch.Tensor:
        return p.detach().t() if p.dim() == 2 else p.detach()

    def _loaded(self, part: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return part.view(p.shape[1], p.shape[0]).t() if p.dim() == 2 else part.view_as(p)

    def gradients(self, flat: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
        """Every model's gradient, ``(S, P)``, of its loss on its batch (see :meth:`VmapStack.gradients`)."""
        size = len(flat)
        with torch.enable_grad():
            leaves = [part.detach().requires_grad_() for part in torch.split(flat, self.numels, dim=1)]
            blocks = iter(leaves)
            h = xb
            for layer in self.layers:
                if isinstance(layer, nn.Linear):
                    weight = next(blocks).view(size, layer.in_features, layer.out_features)
                    if layer.bias is None:
                        h = torch.bmm(h, weight)
                    else:
                        h = torch.baddbmm(next(blocks).unsqueeze(1), h, weight)
                elif isinstance(layer, nn.Flatten):
                    h = h.flatten(2)
                else:
                    h = layer(h)
            grads = torch.autograd.grad(weighted_cross_entropy(h, yb, wb), leaves)
        return torch.cat([g.reshape(size, -1) for g in grads], dim=1)


def _linear_params(layer: nn.Linear) -> list[nn.Parameter]:
    return [layer.weight] if layer.bias is None else [layer.weight, layer.bias]


def linear_chain(module: nn.Module, x: torch.Tensor) -> list[str] | None:
    """The names of ``module``'s layers when its forward pass on rows like ``x`` is a plain chain, else ``None``.

    A chain is what :func:`torch.fx.symbolic_trace` records as one input passed through
    ``call_module`` nodes one after another, each taking only the previous one's output, all of
    them ``Linear``, ``Flatten()`` (the default dims), element-wise activations, ``Dropout`` or
    ``Identity``, with every parameter of ``module`` in the chain's ``Linear`` layers and the
    rows ``(N, features)`` by the time they reach the first ``Linear``.
    """
    try:
        graph = fx.symbolic_trace(module).graph
    except Exception:  # not traceable: control flow, calls fx cannot follow; the caller falls back
        return None
    nodes = list(graph.nodes)
    if len(nodes) < 3 or nodes[0].op != "placeholder" or nodes[-1].op != "output":
        return None
    names: list[str] = []
    layers: list[nn.Module] = []
    previous = nodes[0]
    for node in nodes[1:-1]:
        if node.op != "call_module" or node.args != (previous,) or node.kwargs:
            return None
        layer = module.get_submodule(str(node.target))
        if not _chainable(layer):
            return None
        names.append(str(node.target))
        layers.append(layer)
        previous = node
    if nodes[-1].args != (previous,):
        return None
    linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
    in_chain = {id(p) for layer in linears for p in _linear_params(layer)}
    if not linears or any(id(p) not in in_chain for p in module.parameters()):
        return None
    flattened = x.dim() == 2 or any(isinstance(layer, nn.Flatten) for layer in layers[: layers.index(linears[0])])
    return names if flattened else None


def _chainable(layer: nn.Module) -> bool:
    if isinstance(layer, nn.Flatten):
        return layer.start_dim == 1 and layer.end_dim == -1
    return isinstance(layer, (nn.Linear, *_ELEMENTWISE)) and not list(layer.children())


def stack_models(models: Sequence[nn.Module], x: torch.Tensor) -> LinearChainStack | VmapStack:
    """The fastest stack that can run ``models`` (identical architectures, checked by the caller) on rows like ``x``."""
    chain = linear_chain(models[0], x)
    return VmapStack(models) if chain is None else LinearChainStack(models, chain)
