"""models: the zoo, the timm and torchvision adapters, user factories, and safe checkpoint loading."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from bench.errors import UserError
from models import MODELS
from models.checkpoint import load_checkpoint, read_state_dict, save_checkpoint

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def context(shape=(1, 8, 8), num_classes=10) -> dict:
    """What ``Dataset.model_context()`` gives a factory."""
    channels = shape[0]
    return {"input_shape": tuple(shape), "num_classes": num_classes, "mean": [0.3] * channels, "std": [0.25] * channels}


def build(name: str, seed: int = 0, ctx: dict | None = None, **params) -> nn.Module:
    torch.manual_seed(seed)
    return MODELS.create(name, context=ctx or context(), **params).eval()


def images(shape=(1, 8, 8), n: int = 4) -> torch.Tensor:
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(123))


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


# -- user factories, imported by 'tests.models.test_models:<name>' ------------------
def my_factory(*, input_shape, num_classes, hidden: int = 8) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def fixed_factory(hidden: int = 8) -> nn.Module:
    """Names no context value: it must be called without any."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 3))


def open_factory(**kwargs) -> nn.Module:
    """Takes anything: it receives the whole context."""
    model = my_factory(input_shape=kwargs["input_shape"], num_classes=kwargs["num_classes"])
    model.received = dict(kwargs)
    return model


# -- an object whose unpickling has a side effect -------------------------------------
def _touch(path: str) -> None:
    Path(path).write_text("code ran while loading a checkpoint")


class Trap:
    """Unpickling this calls ``_touch(marker)``: a stand-in for arbitrary code in a malicious checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


# -- the zoo ------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", ["small-cnn", "mlp"])
def test_zoo_models_give_logits_for_each_input_shape(name, shape):
    model = build(name, ctx=context(shape, num_classes=7))
    x = images(shape)
    logits = model(x)
    assert logits.shape == (4, 7)
    assert torch.isfinite(logits).all()
    # the [0, 1] image is normalized inside, with the data's per-channel statistics
    normalize = model[0]
    torch.testing.assert_close(normalize(x), (x - 0.3) / 0.25)


def test_zoo_models_take_their_own_parameters():
    wide = build("small-cnn", width=8, hidden=16)
    assert wide[1].out_channels == 8 and wide[-1].in_features == 16
    deep = build("mlp", depth=3, hidden=32)
    assert [m.out_features for m in deep if isinstance(m, torch.nn.Linear)] == [32, 32, 32, 10]  # Zhang et al.'s 3x512, smaller
    with pytest.raises(UserError, match="unknown parameter 'layers'"):
        build("mlp", layers=3)


# -- timm and torchvision ------------------------------------------------------------
@pytest.mark.parametrize("arch", ["resnet18", "mobilenetv3_small_050"])
def test_timm_models_on_small_grey_images(arch, monkeypatch):
    import timm

    calls = []
    create = timm.create_model

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return create(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    model = build(f"timm:{arch}", ctx=context((1, 8, 8), num_classes=10))
    assert model(images((1, 8, 8), n=3)).shape == (3, 10)
    assert calls[0]["pretrained"] is False and calls[0]["in_chans"] == 1 and calls[0]["num_classes"] == 10
    # without pretrained weights, the data's own statistics normalize the input
    assert model.normalize.mean.flatten().tolist() == pytest.approx([0.3])


def test_timm_tagged_names_build_and_unknown_names_are_user_errors():
    assert build("timm:resnet18.a1_in1k")(images()).shape == (4, 10)
    for name in ("timm:not_a_model", "timm:resnet*"):
        with pytest.raises(UserError, match="unknown timm model"):
            build(name)


def test_timm_pretrained_file_loads_offline_and_adapts_to_grey_and_ten_classes(tmp_path):
    import timm

    torch.manual_seed(1)
    imagenet = timm.create_model("resnet18")  # 3 channels, 1000 classes
    saved = state_of(imagenet)
    path = tmp_path / "resnet18.safetensors"
    save_file(saved, str(path))

    model = build("timm:resnet18", seed=2, pretrained_file=str(path))
    assert model(images()).shape == (4, 10)
    net = model.net
    # timm's adapt_input_conv sums the RGB filters for a one-channel stem
    assert net.conv1.weight.shape == (64, 1, 7, 7)
    torch.testing.assert_close(net.conv1.weight, saved["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(net.layer4[1].conv2.weight, saved["layer4.1.conv2.weight"])
    assert net.fc.weight.shape == (10, 512)  # the 1000-class head is dropped, a new one made
    # pretrained weights come with the statistics they were trained with, averaged to one channel
    assert model.normalize.mean.flatten().tolist() == pytest.approx([sum((0.485, 0.456, 0.406)) / 3])


def test_timm_pretrained_file_problems_are_user_errors(tmp_path):
    import timm

    with pytest.raises(UserError, match="does not exist"):
        build("timm:resnet18", pretrained_file=str(tmp_path / "missing.safetensors"))
    other_variant = state_of(timm.create_model("resnet18"))
    other_variant["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)  # a stage of another width
    mismatched = tmp_path / "mismatched.safetensors"
    save_file(other_variant, str(mismatched))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 3)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    for path in (mismatched, corrupt, empty):
        with pytest.raises(UserError, match=f"cannot load pretrained_file '{path}'"):
            build("timm:resnet18", pretrained_file=str(path))


def test_timm_pretrained_file_is_never_unpickled_unsafely(tmp_path):
    marker = tmp_path / "marker"
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"conv1.weight": torch.zeros(1), "obj": Trap(marker)}, unsafe)
    with pytest.raises(UserError, match="cannot load pretrained_file"):
        build("timm:resnet18", pretrained_file=str(unsafe))
    assert not marker.exists()


def test_torchvision_resnet18_on_grey_images():
    model = build("torchvision:resnet18", ctx=context((1, 28, 28), num_classes=10))
    assert model(images((1, 28, 28), n=2)).shape == (2, 10)
    assert model.net.conv1.in_channels == 3  # the grey channel is repeated to the RGB stem
    with pytest.raises(UserError, match="unknown torchvision model"):
        build("torchvision:not_a_model")


# -- user factories through the registry ---------------------------------------------
def test_user_factory_gets_the_context_values_it_names():
    model = build("tests.models.test_models:my_factory", ctx=context((1, 8, 8), num_classes=4), hidden=5)
    assert model(images()).shape == (4, 4)
    assert model[1].in_features == 64 and model[1].out_features == 5
    # an explicit parameter wins over the context
    assert build("tests.models.test_models:my_factory", num_classes=2)(images()).shape == (4, 2)


def test_user_factory_without_context_parameters_gets_none():
    model = build("tests.models.test_models:fixed_factory")  # would raise TypeError if handed input_shape
    assert model(images()).shape == (4, 3)


def test_user_factory_with_var_keywords_gets_the_whole_context():
    ctx = context((1, 8, 8), num_classes=6)
    model = build("tests.models.test_models:open_factory", ctx=ctx)
    assert model.received == ctx


def test_user_factory_errors_are_user_errors():
    with pytest.raises(UserError, match="unknown parameter 'depth'"):
        build("tests.models.test_models:my_factory", depth=2)
    with pytest.raises(UserError, match="no attribute 'nope'"):
        build("tests.models.test_models:nope")
    with pytest.raises(UserError, match="cannot import"):
        build("tests.no_such_module:factory")


# -- checkpoints --------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["safetensors", "pt", "pt-nested"])
def test_checkpoint_reproduces_the_model_outputs(tmp_path, layout):
    source = build("small-cnn", seed=0)
    state = state_of(source)
    if layout == "safetensors":
        path = tmp_path / "model.safetensors"
        save_file(state, str(path))
    else:
        path = tmp_path / "model.pt"
        torch.save({"state_dict": state, "epoch": 3} if layout == "pt-nested" else source.state_dict(), path)
    assert set(read_state_dict(path)) == set(state)

    target = build("small-cnn", seed=1)
    x = images()
    assert not torch.equal(target(x), source(x))
    assert load_checkpoint(target, path) is target
    assert torch.equal(target(x), source(x))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_checkpoint_holding_python_objects_is_refused_without_running_them(tmp_path, writer):
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pt"
    payload = {"w": torch.zeros(1), "obj": Trap(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with path.open("wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(UserError, match="unsafe"):
        read_state_dict(path)
    with pytest.raises(UserError, match="unsafe"):
        load_checkpoint(build("small-cnn"), path)
    assert not marker.exists()
    # the trap is armed: an unsafe load would have run it
    if writer == "torch.save":
        torch.load(path, weights_only=False)
        assert marker.exists()


def test_checkpoint_that_does_not_fit_is_a_user_error(tmp_path):
    model = build("small-cnn")
    wrong_keys = tmp_path / "mlp.safetensors"
    save_file(state_of(build("mlp")), str(wrong_keys))
    with pytest.raises(UserError, match="does not fit the model: missing"):
        load_checkpoint(model, wrong_keys)
    wrong_shapes = tmp_path / "five.pt"
    torch.save(build("small-cnn", ctx=context(num_classes=5)).state_dict(), wrong_shapes)
    before = state_of(model)
    with pytest.raises(UserError, match="does not fit the model: size mismatch"):
        load_checkpoint(model, wrong_shapes)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_unreadable_checkpoints_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        read_state_dict(tmp_path / "missing.safetensors")
    with pytest.raises(UserError, match="does not exist"):
        load_checkpoint(build("mlp"), tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 3)
    with pytest.raises(UserError, match="not a readable safetensors file"):
        read_state_dict(corrupt)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(UserError, match="not a readable torch file"):
        read_state_dict(empty)
    not_a_state_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], not_a_state_dict)
    with pytest.raises(UserError, match="not a state dict"):
        read_state_dict(not_a_state_dict)


def test_checkpoint_of_the_bare_timm_network_loads_into_the_wrapper(tmp_path):
    source = build("timm:resnet18", seed=0)
    path = tmp_path / "net.safetensors"
    save_file(state_of(source.net), str(path))
    target = build("timm:resnet18", seed=1)
    x = images()
    assert not torch.equal(target(x), source(x))
    load_checkpoint(target, path)
    assert torch.equal(target(x), source(x))
    # a bare network of the wrong size still does not fit
    with pytest.raises(UserError, match="does not fit"):
        load_checkpoint(build("timm:resnet18", ctx=context(num_classes=5)), path)


def test_save_checkpoint_round_trips_and_leaves_no_partial_file(tmp_path):
    source = build("small-cnn", seed=0)
    path = tmp_path / "cache" / "models" / "key.safetensors"
    save_checkpoint(build("small-cnn", seed=3), path)  # an older file, replaced below
    save_checkpoint(source, path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["key.safetensors"]
    target = load_checkpoint(build("small-cnn", seed=1), path)
    x = images()
    assert torch.equal(target(x), source(x))


def test_save_checkpoint_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    import safetensors.torch

    path = tmp_path / "model.safetensors"
    source = build("mlp", seed=0)
    save_checkpoint(source, path)
    good = path.read_bytes()

    def killed(state, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(build("mlp", seed=1), path)
    assert path.read_bytes() == good


def test_save_checkpoint_handles_tied_weights(tmp_path):
    shared = nn.Linear(4, 4)
    source = nn.Sequential(shared, nn.ReLU(), shared)
    path = tmp_path / "tied.safetensors"
    save_checkpoint(source, path)
    torch.manual_seed(1)
    layer = nn.Linear(4, 4)
    target = load_checkpoint(nn.Sequential(layer, nn.ReLU(), layer), path)
    x = torch.rand(2, 4)
    assert torch.equal(target(x), source(x))
