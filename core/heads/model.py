"""LateFusionHeads: three small classifiers over frozen encoder features.

    text features  ──► text head  ──► logits (text only)
    image features ──► image head ──► logits (image only)
    [text ; image] ──► fusion head ──► logits (fused)          (the seed's concat → MLP with dropout)

Inputs are standardised with the training set's mean and std (stored as buffers, so they travel
with the weights). The three heads share nothing, so each can keep its own best epoch.

Each head may be a small ensemble (``members`` > 1): that many independently initialised MLPs over
the same input, trained each on its own loss and averaged (their logits) at prediction. Chosen by
5-fold cross-validation on MVSA train (README): five 32-unit members beat one 256-unit MLP by about
3 points of fused accuracy on the held-out folds, for less compute.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from core.io.labels import LABELS

if TYPE_CHECKING:  # the card is the registry's; the heads only read their shape from it
    from core.registry.card import HeadCard


@dataclass(frozen=True)
class HeadShape:
    """The shape of each head: ``members`` MLPs of ``hidden`` units averaged, ``dropout`` on their
    input. The defaults are the shipped recipe: 5 × 32 units tied 48 and beat 64 and one 256-unit MLP
    in 5-fold CV on MVSA train (docs/experiments.md); dropout 0.5 was best on dev (0.3 overfits)."""

    hidden: int = 32
    members: int = 5
    dropout: float = 0.5

    @classmethod
    def from_card(cls, card: HeadCard) -> HeadShape:
        """The shape a head version's card records; ValueError naming the field when it is missing or
        out of range. Cards written before ensembles have no ``members``: one MLP."""
        for name in ("hidden", "dropout"):
            if getattr(card, name) is None:
                raise ValueError(f"the head card has no {name!r}")
        shape = cls(hidden=int(card.hidden), members=int(card.members or 1), dropout=float(card.dropout))
        if shape.hidden < 1 or not 1 <= shape.members <= 64 or not 0 <= shape.dropout < 1:
            raise ValueError(f"the head card's shape is out of range: {shape}")
        return shape


@dataclass
class HeadConfig:
    """The shape of a set of heads: input sizes, hidden units, dropout, classes, members per head."""
    text_dim: int
    image_dim: int
    hidden: int = HeadShape.hidden
    dropout: float = HeadShape.dropout
    n_classes: int = len(LABELS)
    members: int = 1

    def as_dict(self) -> dict:
        """The config as a plain dict (for cards)."""
        return asdict(self)


def mlp(in_dim: int, hidden: int, dropout: float, n_classes: int) -> nn.Sequential:
    """One member MLP: Linear → GELU → Dropout → Linear, ``in_dim`` → ``n_classes`` logits."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, n_classes),
    )


class MemberMLPs(nn.Module):
    """``members`` independent MLPs (Linear → GELU → Dropout → Linear) over one input; ``forward``
    averages their logits, ``member_logits`` keeps them apart (training gives each member its own
    loss, so they stay different models). The first layers of all members are one wide Linear
    (``members × hidden`` outputs, initialised as each member's own would be) and the second layers
    one batched product: one wide MLP's cost instead of five small ones."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, n_classes: int, members: int):
        super().__init__()
        self.members, self.hidden = members, hidden
        self.first = nn.Linear(in_dim, members * hidden)
        second = [nn.Linear(hidden, n_classes) for _ in range(members)]
        self.w2 = nn.Parameter(torch.stack([layer.weight.detach().T for layer in second]))   # (K, hidden, C)
        self.b2 = nn.Parameter(torch.stack([layer.bias.detach() for layer in second]))       # (K, C)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(n, in) → (members, n, classes)."""
        hidden = self.dropout(self.activation(self.first(x)))
        hidden = hidden.view(len(x), self.members, self.hidden).transpose(0, 1)
        return torch.baddbmm(self.b2.unsqueeze(1), hidden, self.w2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs (n, in_dim) → the members' mean logits (n, classes)."""
        return self.member_logits(x).mean(0)


def head_mlp(in_dim: int, config: HeadConfig) -> nn.Module:
    """One head for ``config``: a single MLP, or ``MemberMLPs`` when it has several members."""
    # One member keeps the plain nn.Sequential (and its tensor names), so saved versions still load.
    if config.members == 1:
        return mlp(in_dim, config.hidden, config.dropout, config.n_classes)
    return MemberMLPs(in_dim, config.hidden, config.dropout, config.n_classes, config.members)


def member_logits(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(members, n, classes) for an ensemble head, (1, n, classes) for a single MLP."""
    return head.member_logits(x) if isinstance(head, MemberMLPs) else head(x).unsqueeze(0)


class LateFusionHeads(nn.Module):
    """The text, image and fused heads over frozen features, with the input normalisation they were trained with."""
    def __init__(self, config: HeadConfig):
        super().__init__()
        self.config = config
        self.register_buffer("text_mean", torch.zeros(config.text_dim))
        self.register_buffer("text_std", torch.ones(config.text_dim))
        self.register_buffer("image_mean", torch.zeros(config.image_dim))
        self.register_buffer("image_std", torch.ones(config.image_dim))
        # Light dropout on the input features, drawn once per batch and shared by the three heads:
        # the features are redundant, so this regularises cheaply (and one draw instead of three is
        # a third of the cost of training, measured).
        self.input_dropout = nn.Dropout(config.dropout / 2)
        self.heads = nn.ModuleDict({
            "text": head_mlp(config.text_dim, config),
            "image": head_mlp(config.image_dim, config),
            "fused": head_mlp(config.text_dim + config.image_dim, config),
        })

    def fit_normalisation(self, text: np.ndarray, image: np.ndarray) -> None:
        """Set the per-dimension mean and (floored) std of the inputs from training features."""
        for name, feats in (("text", text), ("image", image)):
            tensor = torch.as_tensor(feats, dtype=torch.float32)
            getattr(self, f"{name}_mean").copy_(tensor.mean(0))
            std = tensor.std(0)
            # Floor each dimension's scale at a tenth of the typical one: a dimension that happens to
            # be (almost) constant in training would otherwise blow up on any new input.
            getattr(self, f"{name}_std").copy_(torch.maximum(std, 0.1 * std.mean()).clamp(min=1e-6))

    def normalise(self, text: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Text and image features → normalised by the stored mean and std."""
        return (text - self.text_mean) / self.text_std, (image - self.image_mean) / self.image_std

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Text (n, text_dim) and image (n, image_dim) features → logits per head ("text", "image", "fused")."""
        text, image = self.normalise(text, image)
        text, image = self.input_dropout(text), self.input_dropout(image)
        return {
            "text": self.heads["text"](text),
            "image": self.heads["image"](image),
            "fused": self.heads["fused"](torch.cat([text, image], dim=-1)),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat name → tensor dict for safetensors (contiguous CPU copies)."""
        return {name: t.detach().cpu().contiguous().clone() for name, t in self.state_dict().items()}

    def tensor_shapes(self) -> dict[str, list[int]]:
        """Name → shape of every tensor in the state dict (what a card is checked against)."""
        return {name: list(t.shape) for name, t in self.state_dict().items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], config: HeadConfig) -> "LateFusionHeads":
        """Heads of ``config`` loaded from saved tensors; ValueError naming missing, extra or wrongly shaped
        tensors."""
        model = cls(config)
        expected = model.tensor_shapes()
        got = {name: list(t.shape) for name, t in tensors.items()}
        if expected != got:
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            wrong = sorted(n for n in set(expected) & set(got) if expected[n] != got[n])
            raise ValueError(f"head weights do not fit this configuration: missing {missing}, "
                             f"unexpected {extra}, wrong shape {[(n, got[n], expected[n]) for n in wrong]}")
        model.load_state_dict(tensors)
        return model.eval()
