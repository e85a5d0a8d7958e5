"""Reading degrees off any photo with CLIP: zero-shot over a text description of each degree.

The diffusion backend has no trained attribute predictor, so "a bit more" and "target 4" are
read by open_clip: for every attribute, the image embedding is compared with the embeddings of
its six degree descriptions (``prompts/attributes.yaml`` put into the attribute's ``reader``
sentence from ``prompts/diffusion.yaml``), and the softmax over those similarities is read like a
predictor's distribution over degrees. A zero-shot reader is coarse; it steers the walk and is
never used to grade it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from chatedit.attributes import load_attributes

from ..backend import PredictorReading

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def degree_prompts(texts: dict) -> list[list[str]]:
    """The sentences the reader compares an image with: (attribute, degree)."""
    return [[texts["attributes"][a.name]["reader"].format(d) for d in a.degrees] for a in load_attributes()]


def load_clip(spec: str, device: str | torch.device):
    """An open_clip model and tokenizer from ``NAME`` (with ``pretrained`` tag ``NAME@TAG``), or a folder.

    A folder holds ``open_clip_config.json`` and the weights (open_clip's ``local-dir:`` layout);
    a name with a tag may be fetched by open_clip into its normal cache unless the hub is offline.
    """
    import open_clip

    if Path(spec).is_dir():
        name, pretrained = f"local-dir:{spec}", None
    else:
        name, _, pretrained = spec.partition("@")
        pretrained = pretrained or None
    model = open_clip.create_model(name, pretrained=pretrained, device=device)
    return model.eval().requires_grad_(False), open_clip.get_tokenizer(name)


class ClipDegreeReader:
    def __init__(self, model, tokenizer, prompts: list[list[str]], device: str | torch.device = "cpu"):
        self.model = model
        self.device = torch.device(device)
        self.size = int(model.visual.image_size[0] if isinstance(model.visual.image_size, (tuple, list))
                        else model.visual.image_size)
        self.num_degrees = len(prompts[0])
        with torch.no_grad():
            tokens = tokenizer([p for attribute in prompts for p in attribute]).to(self.device)
            text = F.normalize(model.encode_text(tokens).float(), dim=-1)
        self.text = text.view(len(prompts), self.num_degrees, -1)  # (A, D, E)
        self.scale = float(model.logit_scale.exp()) if hasattr(model, "logit_scale") else 100.0
        self.mean = torch.tensor(CLIP_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(CLIP_STD, device=self.device).view(1, 3, 1, 1)

    @torch.no_grad()
    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """(B, A, D) scaled cosine similarities of images (B, 3, H, W) in [0, 1] with each degree."""
        x = F.interpolate(image.to(self.device).float(), size=(self.size, self.size), mode="bicubic",
                          align_corners=False, antialias=True).clamp(0, 1)
        emb = F.normalize(self.model.encode_image((x - self.mean) / self.std).float(), dim=-1)  # (B, E)
        return self.scale * torch.einsum("be,ade->bad", emb, self.text)

    def read(self, image: torch.Tensor) -> PredictorReading:
        return PredictorReading.from_logits(self.logits(image))
