"""The W+ adapter's parts (Li et al., CVPR 2024; ``csxmli2016/w-plus-adapter``) as our own modules.

The published ``wplus_adapter.bin`` is ``torch.save({"w_proj": ..., "wplus_adapter": ...})``
(``script/transfer_pytorchmodel_to_wplus.py``), two state dicts:

- ``w_proj`` (``WProjModel``): the W+ code (B, 18, 512) cut into row groups [0:4], [4:8], [8:12],
  [12:18], each flattened and mapped by its own bias-free linear layer to one token of the
  UNet's cross-attention width (``proj_0.weight`` … ``proj_3.weight``: (768, 2048) three times and
  (768, 3072) for SD 1.5), the four tokens then layer-normalised together (``norm.weight``,
  ``norm.bias``). ``WProjection`` keeps those names; the row groups are read from the shapes.
- ``wplus_adapter``: ``nn.ModuleList(unet.attn_processors.values())``, so keys are numbered by each
  attention processor's place in ``unet.attn_processors`` (self-attention ones hold nothing; in
  SD 1.5 the 16 cross-attention processors are the odd numbers 1 … 31). Each cross-attention
  processor has three bias-free linear layers, ``to_k_wplus`` and ``to_v_wplus`` (C_cross → inner)
  and ``to_q_wplus`` (inner → inner).

``WPlusAttnProcessor`` computes what the published ``WPlusAttnProcessor2_0`` does: the last
``num_tokens`` (4) of the encoder states are the W+ tokens, the rest the prompt's; the layer
attends to the prompt as usual, and to the W+ tokens with queries made from **that attention's
output** (``to_q_wplus(hidden_states)``, not from the layer's input), adding ``scale`` times the
result before the layer's output projection. The unconditional row of classifier-free guidance
gets the projection of a zero code, as the published ``get_w_embeds`` does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NUM_TOKENS = 4
PUBLISHED_ROWS = (4, 4, 4, 6)  # W+ rows per token in the published 1024 px (18-row) projection


class WProjection(nn.Module):
    """W+ (B, sum(rows), style_dim) → (B, len(rows), cross_dim) tokens, keys as ``WProjModel``'s."""

    def __init__(self, rows: tuple[int, ...] = PUBLISHED_ROWS, style_dim: int = 512, cross_dim: int = 768):
        super().__init__()
        if len(rows) != NUM_TOKENS or min(rows) < 1:
            raise ValueError(f"the W+ projection makes {NUM_TOKENS} tokens from row groups, got groups {rows}")
        self.config = dict(rows=tuple(int(r) for r in rows), style_dim=style_dim, cross_dim=cross_dim)
        self.rows, self.style_dim = self.config["rows"], style_dim
        for k, count in enumerate(self.rows):
            self.add_module(f"proj_{k}", nn.Linear(style_dim * count, cross_dim, bias=False))
        self.norm = nn.LayerNorm(cross_dim)

    @property
    def n_rows(self) -> int:
        return sum(self.rows)

    def forward(self, w_plus: torch.Tensor) -> torch.Tensor:
        if w_plus.ndim != 3 or tuple(w_plus.shape[1:]) != (self.n_rows, self.style_dim):
            raise ValueError(f"the W+ projection takes codes (B, {self.n_rows}, {self.style_dim}), "
                             f"got {tuple(w_plus.shape)}")
        tokens, start = [], 0
        for k, count in enumerate(self.rows):
            group = w_plus[:, start:start + count].reshape(w_plus.shape[0], -1)  # (B, count × style_dim)
            tokens.append(getattr(self, f"proj_{k}")(group))
            start += count
        return self.norm(torch.stack(tokens, dim=1))  # (B, 4, cross_dim)


class WPlusAttnProcessor(nn.Module):
    """A cross-attention processor that also attends to the W+ tokens (see the module doc)."""

    def __init__(self, inner_dim: int, cross_dim: int, scale: float = 1.0, num_tokens: int = NUM_TOKENS):
        super().__init__()
        self.to_k_wplus = nn.Linear(cross_dim, inner_dim, bias=False)
        self.to_v_wplus = nn.Linear(cross_dim, inner_dim, bias=False)
        self.to_q_wplus = nn.Linear(inner_dim, inner_dim, bias=False)
        self.scale, self.num_tokens = scale, num_tokens

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None, *args, **kwargs):
        if encoder_hidden_states is None or encoder_hidden_states.shape[1] <= self.num_tokens:
            raise ValueError(f"a W+ cross-attention layer needs the prompt's states followed by {self.num_tokens} "
                             "W+ tokens; it was called without them")
        # 1. the layer's input as diffusers' own processor prepares it
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        spatial = hidden_states.ndim == 4
        if spatial:
            batch, channels, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channels, height * width).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        text, wplus = encoder_hidden_states[:, :-self.num_tokens], encoder_hidden_states[:, -self.num_tokens:]
        if attn.norm_cross:
            text = attn.norm_encoder_hidden_states(text)
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, text.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])

        def heads(x):  # (B, L, inner) -> (B, heads, L, inner / heads)
            return x.view(batch, -1, attn.heads, x.shape[-1] // attn.heads).transpose(1, 2)

        def merged(x):  # back to (B, L, inner)
            return x.transpose(1, 2).reshape(batch, -1, x.shape[1] * x.shape[-1])

        # 2. attention over the prompt, as usual
        query = attn.to_q(hidden_states)
        out = merged(F.scaled_dot_product_attention(heads(query), heads(attn.to_k(text)), heads(attn.to_v(text)),
                                                    attn_mask=attention_mask)).to(query.dtype)  # (B, N, inner)
        # 3. attention over the W+ tokens, queried from that output; added at ``scale``
        if self.scale:
            face = F.scaled_dot_product_attention(heads(self.to_q_wplus(out)), heads(self.to_k_wplus(wplus)),
                                                  heads(self.to_v_wplus(wplus)))
            out = out + self.scale * merged(face).to(query.dtype)
        # 4. the layer's output projection, dropout, residual and rescale
        out = attn.to_out[1](attn.to_out[0](out))
        if spatial:
            out = out.transpose(-1, -2).reshape(batch, channels, height, width)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


@dataclass
class WPlusAdapter:
    """A loaded W+ adapter: its projection and its processors, installed on one UNet."""

    projection: WProjection
    processors: dict[str, WPlusAttnProcessor]  # the UNet's cross-attention processor names -> ours

    def set_scale(self, scale: float) -> None:
        for processor in self.processors.values():
            processor.scale = scale

    @torch.no_grad()
    def tokens(self, w_plus: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The W+ tokens of codes (B, rows, C), and those of the zero code for the unconditional rows."""
        weight = self.projection.proj_0.weight
        w_plus = w_plus.to(weight.device, weight.dtype)
        return self.projection(w_plus), self.projection(torch.zeros_like(w_plus))


def processor_layout(unet) -> dict[int, tuple[str, int, int]]:
    """Each cross-attention processor's number in the published file → (its name, inner width, cross width)."""
    layout = {}
    for number, name in enumerate(unet.attn_processors):
        attention = unet.get_submodule(name.removesuffix(".processor"))
        if getattr(attention, "is_cross_attention", False):
            layout[number] = (name, attention.to_q.out_features, attention.to_k.in_features)
    return layout
