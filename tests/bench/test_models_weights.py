"""Model layer, weights: local pretrained files (timm, open_clip / OpenAI state dicts, TorchScript, MGLL
checkpoints), mismatch reports, and the self-describing encoder checkpoint."""

from __future__ import annotations

import argparse
import shutil
import warnings

import pytest
import torch

from bench.models import ModelConfigError, TwoTower, load_encoder, load_mgll_checkpoint, save_encoder

TEXTS = ["a chest x ray", "a fundus photo with mild disease", "normal retina"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(" ".join(TEXTS).split()))

# A tiny open_clip CLIP: the ViT-B-32 config shrunk (vision width 64, 2 layers; text width 64, 2 layers).
VISION = {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 16}
TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
EMBED = 48
OC_IMAGE = {"name": "open_clip", "model": "ViT-B-32",
            "model_cfg": {"width": 64, "layers": 2, "head_width": 32, "patch_size": 16, "embed_dim": EMBED}}
OC_TEXT = {"name": "open_clip", "model": "ViT-B-32", "context_length": 77,
           "model_cfg": {"width": 64, "heads": 2, "layers": 2, "embed_dim": EMBED}}


def make_bert_folder(path):
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    try:  # transformers >= 5 takes the vocabulary as `vocab`; 4.x as `vocab_file`
        tok = BertTokenizer(vocab=str(path / "vocab.txt"))
    except TypeError:
        tok = BertTokenizer(vocab_file=str(path / "vocab.txt"))
    assert tok.convert_tokens_to_ids("retina") != tok.unk_token_id
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def reference_clip(custom_text: bool = False, quick_gelu: bool = False):
    """A tiny open_clip model with random weights: the source of the state dicts the tests write."""
    from open_clip.model import CLIP, CustomTextCLIP

    torch.manual_seed(123)
    cls = CustomTextCLIP if custom_text else CLIP
    return cls(EMBED, VISION, TEXT, quick_gelu=quick_gelu).eval()


def build(image=None, text=None, **kw) -> TwoTower:
    torch.manual_seed(0)
    kw.setdefault("embed_dim", EMBED)
    kw.setdefault("resolution", 32)
    return TwoTower(image or {"name": "vit_tiny_custom", "width": 32, "depth": 2, "heads": 2},
                    text or {"name": "tiny_transformer", "width": 32, "heads": 2, "layers": 2, "context_length": 16},
                    **kw).eval()


PIXELS = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))


# -- open_clip towers from local state dicts ----------------------------------------------------------------
def test_open_clip_visual_from_full_openai_format_state_dict(tmp_path):
    ref = reference_clip()  # plain CLIP: the OpenAI / old open_clip key layout (visual.*, token_embedding, ...)
    torch.save({k: v.half() for k, v in ref.state_dict().items()}, tmp_path / "clip.pt")  # OpenAI files are fp16
    m = build(image={**OC_IMAGE, "pretrained": str(tmp_path / "clip.pt")}, normalize_embeddings=False)
    with torch.no_grad():
        expected = reference_clip().half().float().visual(PIXELS)
        assert torch.allclose(m.encode_image(PIXELS), expected, atol=1e-5)


def test_open_clip_text_from_full_state_dict_cuts_positions(tmp_path):
    ref = reference_clip()
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "clip.pt")
    full = build(text={**OC_TEXT, "pretrained": str(tmp_path / "clip.pt")}, normalize_embeddings=False)
    short = build(text={**OC_TEXT, "context_length": 16, "pretrained": str(tmp_path / "clip.pt")}, normalize_embeddings=False)
    with torch.no_grad():
        expected = ref.encode_text(full.tokenize(TEXTS))
        assert torch.allclose(full.encode_text(full.tokenize(TEXTS)), expected, atol=1e-5)
        # a causal tower with a shorter table gives the same embedding for texts that fit
        assert torch.allclose(short.encode_text(short.tokenize(TEXTS)), expected, atol=1e-5)


def test_open_clip_visual_from_bare_visual_state_dict_at_other_resolution(tmp_path):
    ref = reference_clip()
    torch.save(ref.visual.state_dict(), tmp_path / "visual.pth")
    m = build(image={**OC_IMAGE, "pretrained": str(tmp_path / "visual.pth")}, resolution=64)
    assert m.visual.net.positional_embedding.shape[0] == 4 * 4 + 1  # resized from 2x2 grid
    assert torch.equal(m.visual.net.conv1.weight, ref.visual.conv1.weight)


def test_open_clip_from_torchscript_file(tmp_path):
    ref = reference_clip(quick_gelu=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(ref, {"encode_image": (PIXELS,)}, check_trace=False)
        torch.jit.save(traced, tmp_path / "ViT-tiny.pt")
    m = build(image={**OC_IMAGE, "quick_gelu": True, "pretrained": str(tmp_path / "ViT-tiny.pt")},
              text={**OC_TEXT, "quick_gelu": True, "pretrained": str(tmp_path / "ViT-tiny.pt")}, normalize_embeddings=False)
    with torch.no_grad():
        assert torch.allclose(m.encode_image(PIXELS), ref.encode_image(PIXELS), atol=1e-5)
        tokens = m.tokenize(TEXTS)
        assert torch.allclose(m.encode_text(tokens), ref.encode_text(tokens), atol=1e-5)


def _mgll_checkpoint(path, ref, extra=None):
    sd = {f"clip.{k}": v for k, v in ref.state_dict().items()}
    sd["logit_scale"] = torch.tensor(3.2)
    sd["text2visual.query_proj.weight"] = torch.zeros(EMBED, EMBED)  # MGLL's unused cross-attention blocks
    sd.update(extra or {})
    torch.save({"model": sd, "optimizer": {}, "epoch": 4, "args": argparse.Namespace(module="MultiGranularModule")}, path)
    return path


def test_load_mgll_checkpoint_into_open_clip_towers(tmp_path):
    ref = reference_clip(custom_text=True)  # MGLL: force_custom_text=True -> clip.text.*
    path = _mgll_checkpoint(tmp_path / "checkpoint-best.pth", ref)
    m = build(image=OC_IMAGE, text=OC_TEXT, normalize_embeddings=False)
    report = load_mgll_checkpoint(m, path)
    assert "visual.net.conv1.weight" in report["matched"] and "text.net.token_embedding.weight" in report["matched"]
    assert report["missing"] == [] and report["mismatched"] == []
    assert "clip.logit_scale" in report["unexpected"] and "text2visual.query_proj.weight" in report["unexpected"]
    assert m.log_logit_scale.item() == pytest.approx(3.2)
    with torch.no_grad():
        assert torch.allclose(m.encode_image(PIXELS), ref.encode_image(PIXELS), atol=1e-5)
        tokens = m.tokenize(TEXTS)
        assert torch.allclose(m.encode_text(tokens), ref.encode_text(tokens), atol=1e-5)
    # the same file as a tower's pretrained weights: the clip.visual.* keys are found
    m2 = build(image={**OC_IMAGE, "pretrained": str(path)}, normalize_embeddings=False)
    with torch.no_grad():
        assert torch.allclose(m2.encode_image(PIXELS), ref.encode_image(PIXELS), atol=1e-5)


def test_load_mgll_checkpoint_bert_branch_and_partial_report(tmp_path):
    bert = make_bert_folder(tmp_path / "bert")
    src = build(image=OC_IMAGE, text={"name": "hf", "path": str(bert), "pooling": "flair"})
    ref = reference_clip(custom_text=True)
    extra = {f"text_model.model.{k}": v + 0.5 for k, v in src.text.model.state_dict().items()}
    extra["text_model.projection_head_text.projection.weight"] = torch.full((EMBED, 32), 0.01)
    path = _mgll_checkpoint(tmp_path / "mgll_bert.pth", ref, extra)
    report = load_mgll_checkpoint(src, path)
    assert "text.proj.weight" in report["matched"] and "text.model.encoder.layer.1.output.dense.weight" in report["matched"]
    assert torch.allclose(src.text.proj.weight, torch.full((EMBED, 32), 0.01))
    assert any(k.startswith("clip.text.") for k in report["unexpected"])  # no open_clip text tower to take them
    # a model with no matching tower: a clear error
    with pytest.raises(ModelConfigError, match="no key matches"):
        other = build()
        del other.log_logit_scale
        other.register_parameter("log_logit_scale", None)
        load_mgll_checkpoint(other, path)
    with pytest.raises(ModelConfigError, match="strict"):
        load_mgll_checkpoint(build(image=OC_IMAGE), path, strict=True)


# -- timm from a local file, mismatches ---------------------------------------------------------------------
def test_timm_pretrained_file_with_classifier(tmp_path):
    import timm

    torch.manual_seed(7)
    src = timm.create_model("resnet18", num_classes=1000).eval()
    torch.save({"state_dict": src.state_dict(), "epoch": 3}, tmp_path / "r18.pth")
    m = build(image={"name": "resnet18", "pretrained": str(tmp_path / "r18.pth")}, embed_dim=512, normalize_embeddings=False)
    with torch.no_grad():
        assert torch.allclose(m.encode_image(PIXELS), src.forward_head(src.forward_features(PIXELS), pre_logits=True), atol=1e-5)


def test_mismatched_weights_name_keys(tmp_path):
    import timm

    torch.save(timm.create_model("resnet34", num_classes=0).state_dict(), tmp_path / "r34.pth")
    with pytest.raises(ModelConfigError, match=r"do not match.*unexpected \(layer1\.2\.") as e:
        build(image={"name": "resnet18", "pretrained": str(tmp_path / "r34.pth")})
    assert "strict=false" in str(e.value)
    m = build(image={"name": "resnet18", "pretrained": str(tmp_path / "r34.pth"), "strict": False})
    assert m.visual.net.conv1.weight.shape == (64, 3, 7, 7)

    ref = reference_clip()
    torch.save(ref.state_dict(), tmp_path / "clip.pt")
    wide = {**OC_IMAGE, "model_cfg": {**OC_IMAGE["model_cfg"], "width": 96}, "pretrained": str(tmp_path / "clip.pt")}
    with pytest.raises(ModelConfigError, match=r"mismatched \(.*conv1.weight: \(64, 3, 16, 16\) vs \(96, 3, 16, 16\)"):
        build(image=wide)
    torch.save({"foo": torch.zeros(3)}, tmp_path / "junk.pt")
    with pytest.raises(ModelConfigError, match="no key of the file matches"):
        build(image={"name": "resnet18", "pretrained": str(tmp_path / "junk.pt")})


# -- encoder checkpoints ------------------------------------------------------------------------------------
def _outputs(m: TwoTower):
    with torch.no_grad():
        return m.encode_image(PIXELS), m.encode_text(m.tokenize(TEXTS))


@pytest.mark.parametrize("kind", ["default", "open_clip", "hf"])
def test_encoder_checkpoint_round_trip(kind, tmp_path):
    bert = make_bert_folder(tmp_path / "bert") if kind == "hf" else None
    image = {"default": None, "open_clip": OC_IMAGE, "hf": {"name": "resnet18", "freeze": 2}}[kind]
    text = {"default": None, "open_clip": {**OC_TEXT, "context_length": 16},
            "hf": {"name": "hf", "path": str(bert), "pooling": "flair", "context_length": 16}}[kind]
    m = build(image=image, text=text, normalize_embeddings=kind != "hf", logit_bias_init=-10.0 if kind == "hf" else None)
    with torch.no_grad():  # move away from the seed-0 init so that a silent re-init would be caught
        for p in m.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = save_encoder(m, tmp_path / "enc" / "encoder.pt", step=12)
    raw = torch.load(path, weights_only=True)
    assert raw["config"]["image_cfg"].get("name", "vit_tiny_custom") and raw["meta"] == {"step": 12}
    if bert is not None:
        shutil.rmtree(bert)  # the checkpoint alone must rebuild the encoder
    m2 = load_encoder(path)
    for a, b in zip(_outputs(m), _outputs(m2)):
        assert torch.equal(a, b)
    assert m2.logit_scale().item() == pytest.approx(m.logit_scale().item())
    assert (m2.logit_bias is None) == (m.logit_bias is None)
    assert [p.requires_grad for p in m.parameters()] == [p.requires_grad for p in m2.parameters()]


def test_load_encoder_rejects_other_files(tmp_path):
    torch.save({"model": {}}, tmp_path / "x.pt")
    with pytest.raises(ModelConfigError, match="not a contrastive-bench encoder"):
        load_encoder(tmp_path / "x.pt")
    with pytest.raises(ModelConfigError, match="no such file"):
        load_encoder(tmp_path / "missing.pt")
