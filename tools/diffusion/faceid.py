"""Identity preservation for the diffusion backend: an IP-Adapter FaceID checkpoint fed by insightface.

IP-Adapter FaceID (the published ``ip-adapter-faceid_sd15.bin``) gives Stable Diffusion a face as
an image prompt: a small MLP turns the face's 512-d ArcFace embedding into four tokens, and each
cross-attention layer attends to those tokens with its own key and value projections (``to_k_ip``,
``to_v_ip``) and adds the result, times a scale, to its attention over the text. The file also
holds the LoRA the adapter was trained with.

diffusers' ``load_ip_adapter`` reads the file and builds those parts, but LEDITS++ cannot use them
where they are installed: its ``invert`` and ``__call__`` replace every attention processor with
their own (to record the cross-attention maps its masks come from), which drops the IP-Adapter's
processors, and its ``__call__`` takes no image embeddings. So ``load_faceid`` takes the parts off
the UNet again right after diffusers has loaded them, and ``FaceID.applied`` puts the face back for
one pass with hooks that hold whatever processors LEDITS++ installs:

1. a pre-hook on the UNet projects the embedding into the adapter's tokens, once per UNet call,
   for every row of the batch;
2. a hook after each cross-attention layer adds the attention over those tokens, as diffusers'
   ``IPAdapterAttnProcessor2_0`` would have added it (``tests/test_diffusion_faceid.py`` checks the two
   agree on a plain UNet call).

The hooks are removed when the block ends, on an error too, so the shared UNet is plain between
passes.

**Which rows get the face.** LEDITS++ runs each step as one UNet batch [unconditional, concept 1,
…, concept C] and edits along concept − unconditional, reversed for a negative strength; its
inversion records the noise maps under the unconditional prediction. Classifier-free guidance
usually gives the unconditional row a zero embedding, but here that would put the identity itself
into every edit direction, once per concept and backwards for a reversed concept ("less smile"
would push away from the person), and a redraw with no edit would no longer be the photo. So every
row of every call for a photo (its inversion, the unconditional row and each concept) sees the
same embedding: it cancels out of the edit directions, each concept is predicted for this person,
and the inversion stays exact.
"""

from __future__ import annotations

import logging
import math
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

DEFAULT_SCALE = 0.6  # IP-Adapter FaceID's examples use 0.5-1.0; a starting value, not a measured one
EXPECTED_LAYOUT = ("a FaceID file holds an 'image_proj' state dict (FaceID's projection: proj.0, proj.2, norm) and "
                   "an 'ip_adapter' one (1.to_k_ip.weight, 1.to_v_ip.weight, ... per cross-attention layer), as "
                   "ip-adapter-faceid_sd15.bin does; a .safetensors file the same keys prefixed 'image_proj.' and "
                   "'ip_adapter.'")


@dataclass
class FaceID:
    """The parts of a loaded IP-Adapter FaceID checkpoint, kept off the UNet between passes."""

    path: Path
    projection: nn.Module  # diffusers' MultiIPAdapterImageProjection: [(B, 1, D)] embeddings -> [(B, 1, T, C)] tokens
    layers: dict[str, nn.Module]  # cross-attention module name -> its IP processor (to_k_ip, to_v_ip, scale)
    lora: str | None  # the PEFT adapter name diffusers gave the file's LoRA, if it has one
    embed_dim: int  # D: the ArcFace embedding's length (512 for insightface's buffalo_l)

    @property
    def scale(self) -> float:
        return float(next(iter(self.layers.values())).scale[0])

    @property
    def active(self) -> bool:
        """Scale 0 turns the adapter off entirely: no image prompt and no LoRA."""
        return self.scale > 0

    @contextmanager
    def applied(self, unet: nn.Module, embedding: torch.Tensor) -> Iterator[None]:
        """Inside the block every call of ``unet`` attends to the face with this ArcFace ``embedding`` (D,),
        on every row of its batch; outside it the UNet is as it was."""
        if tuple(embedding.shape) != (self.embed_dim,):
            raise ValueError(f"the FaceID adapter {self.path.name} takes a ({self.embed_dim},) face embedding "
                             f"but got shape {tuple(embedding.shape)}")
        embeds = embedding.to(unet.device, unet.dtype)[None, None]  # (1, 1, D): one face per row
        tokens: list[torch.Tensor] = []  # the current UNet call's (B, T, C) face tokens

        def project(module, args, kwargs):
            rows = (args[0] if args else kwargs["sample"]).shape[0]
            tokens[:] = [self.projection([embeds.expand(rows, -1, -1)])[0][:, 0]]

        def attend(attention, args, kwargs, output, layer):
            hidden = args[0] if args else kwargs["hidden_states"]
            return output + image_attention(attention, layer, hidden, tokens[0])

        handles = [unet.register_forward_pre_hook(project, with_kwargs=True)]
        try:
            for name, layer in self.layers.items():
                attention = unet.get_submodule(name)
                handles.append(attention.register_forward_hook(partial(attend, layer=layer), with_kwargs=True))
            yield
        finally:
            for handle in handles:
                handle.remove()


def image_attention(attention: nn.Module, layer: nn.Module, hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """What IP-Adapter adds to one cross-attention layer's output (B, N, C): the layer's queries of
    ``hidden`` (B, N, C) attending to the face ``tokens`` (B, T, C') through ``layer``'s projections."""
    scale = float(layer.scale[0])
    batch, heads = hidden.shape[0], attention.heads
    query = attention.to_q(hidden)  # (B, N, inner), as the layer's own processor computes it
    key, value = layer.to_k_ip[0](tokens), layer.to_v_ip[0](tokens)  # (B, T, inner)

    def split(x):  # (B, L, inner) -> (B, heads, L, inner / heads)
        return x.view(batch, -1, heads, x.shape[-1] // heads).transpose(1, 2)

    mixed = F.scaled_dot_product_attention(split(query), split(key), split(value))
    mixed = scale * mixed.transpose(1, 2).reshape(batch, -1, key.shape[-1]).to(query.dtype)
    # the layer adds this before its output projection, which is affine (plus any LoRA): only its linear part applies
    out = attention.to_out[0]
    return (out(mixed) - out(torch.zeros_like(mixed[:, :1]))) / attention.rescale_output_factor


def load_faceid(pipe, path: str | Path, scale: float = DEFAULT_SCALE) -> FaceID:
    """The IP-Adapter FaceID checkpoint at ``path``, read by diffusers' ``load_ip_adapter`` into ``pipe``'s
    UNet, scaled with ``set_ip_adapter_scale``, then taken off the UNet again (its LoRA stays, at weight 0
    until a pass turns it on). Raises ``ValueError`` naming the file when it is not such a checkpoint."""
    from diffusers.models.embeddings import IPAdapterFaceIDImageProjection

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--ip-adapter {path} does not exist")
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"--ip-adapter-scale has to be 0 or more but is {scale}")
    unet = pipe.unet
    processors, hid_type = unet.attn_processors, getattr(unet.config, "encoder_hid_dim_type", None)
    loras = set(getattr(unet, "peft_config", {}))

    def take_off(keep_lora: bool = True) -> None:  # the UNet's own attention again, and no image projection
        unet.set_attn_processor(processors)
        unet.encoder_hid_proj = None
        unet.config.encoder_hid_dim_type = hid_type
        if not keep_lora and set(getattr(unet, "peft_config", {})) - loras:
            pipe.delete_adapters(sorted(set(unet.peft_config) - loras))

    # 1. diffusers reads the file (LEDITS++ has no image encoder component, which the loader looks for;
    #    FaceID needs none, so an empty one stands in while loading)
    stand_in = not hasattr(pipe, "image_encoder")
    if stand_in:
        pipe.image_encoder = None
    try:
        pipe.load_ip_adapter(str(path.parent), subfolder="", weight_name=path.name, image_encoder_folder=None)
        pipe.set_ip_adapter_scale(scale)
    except KeyError as error:
        take_off(keep_lora=False)
        raise ValueError(f"--ip-adapter {path} is not an IP-Adapter FaceID checkpoint: {error.args[0]!r} is "
                         f"missing; {EXPECTED_LAYOUT}") from error
    except (ValueError, RuntimeError, OSError) as error:
        take_off(keep_lora=False)
        raise ValueError(f"--ip-adapter {path} is not an IP-Adapter FaceID checkpoint for this model "
                         f"({str(error).splitlines()[0]}); {EXPECTED_LAYOUT}") from error
    finally:
        if stand_in:
            del pipe.image_encoder

    # 2. its parts kept here; the UNet as it was
    projection = unet.encoder_hid_proj
    layers = {name.removesuffix(".processor"): p for name, p in unet.attn_processors.items() if hasattr(p, "to_k_ip")}
    kind = projection.image_projection_layers[0]
    face_id = isinstance(kind, IPAdapterFaceIDImageProjection)
    take_off(keep_lora=face_id)
    if not face_id:
        raise ValueError(f"--ip-adapter {path} is an IP-Adapter, but not a FaceID one (its image projection is a "
                         f"{type(kind).__name__}): this backend feeds it insightface embeddings, not CLIP images")
    new_loras = sorted(set(getattr(unet, "peft_config", {})) - loras)
    faceid = FaceID(path, projection, layers, new_loras[0] if new_loras else None, kind.ff.net[0].proj.in_features)
    logger.info("loaded IP-Adapter FaceID %s at scale %.2f (%d cross-attention layers%s)", path.name, scale,
                len(layers), ", with its LoRA" if faceid.lora else "")
    return faceid
