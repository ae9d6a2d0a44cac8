"""The modified-ReLU-gradient family base (guided backprop, deconvnet, RectGrad): an input
gradient whose ReLU backward pass follows a rule of the subclass."""

from __future__ import annotations

from torch import Tensor, nn

from xai_bench.methods.base import Explainer, MethodNotApplicableError, input_gradient
from xai_bench.methods.hooks import relu_rule

# Non-linearities a ReLU rule cannot see; refused when no ModelMeta says otherwise.
OTHER_ACTIVATIONS = (
    nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.PReLU, nn.Tanh, nn.Sigmoid, nn.Softplus,
    nn.Hardswish, nn.Mish, nn.Softmax, nn.MultiheadAttention,
)  # fmt: skip


class ModifiedReluGradient(Explainer):
    """Input gradient where every ``nn.ReLU`` call back-propagates :meth:`rule` instead of
    ``R * (a > 0)`` (via :func:`~xai_bench.methods.hooks.relu_rule`).

    Needs a ReLU-only network whose ReLUs are ``nn.ReLU`` modules (reused and in-place ReLUs
    are fine); other models raise :class:`MethodNotApplicableError` at construction.
    """

    name = "modified_relu_gradient"
    needs_relu = True

    def check_applicable(self) -> None:
        """Also refuse models without ``nn.ReLU`` modules, or (without meta) other activations."""
        super().check_applicable()
        model_name = self.meta.name if self.meta is not None else type(self.model).__name__
        if not any(isinstance(m, nn.ReLU) for m in self.model.modules()):
            raise MethodNotApplicableError(
                f"{self.name} overrides the backward pass of nn.ReLU modules; {model_name} has none"
            )
        if self.meta is None:
            other = sorted(
                {type(m).__name__ for m in self.model.modules() if isinstance(m, OTHER_ACTIVATIONS)}
            )
            if other:
                raise MethodNotApplicableError(
                    f"{self.name} propagates through ReLUs only; {model_name} has {other}"
                )

    def rule(self, a: Tensor, grad: Tensor) -> Tensor:
        """Gradient w.r.t. a ReLU's input from its output ``a`` and output gradient ``grad``."""
        raise NotImplementedError

    def _attribute(self, x: Tensor, target: Tensor) -> Tensor:  # [B,C,H,W] -> [B,C,H,W]
        with relu_rule(self.model, self.rule):
            return input_gradient(self.model, x, target)[0]
