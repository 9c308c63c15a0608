"""The generic Registry: registration, lookup with suggestions, wildcards, lazy and plugin entries."""

from __future__ import annotations

import sys
import textwrap

import pytest

from bench.errors import UnknownComponent, UserError
from bench.registry import Registry


def make(**kwargs):
    """A fresh registry per test: the global ones are never touched."""
    return Registry("widget", **kwargs)


def widget(*, size: int = 1, colour: str = "red") -> tuple[int, str]:
    return size, colour


def test_register_create_and_defaults():
    reg = make()
    reg.register("widget", widget)
    reg.register("big-widget", widget, defaults={"size": 10})
    assert reg.create("widget", size=3) == (3, "red")
    assert reg.create("big-widget") == (10, "red")
    assert reg.create("big-widget", size=2) == (2, "red")  # the caller wins over defaults


def test_decorator_returns_the_object_and_registers_it():
    reg = make()

    @reg.register("thing", kind="test")
    def thing() -> str:
        return "made"

    assert thing() == "made"
    assert reg.create("thing") == "made"
    assert reg.meta("thing") == {"kind": "test"}


def test_a_name_registered_twice_is_an_error():
    reg = make()
    reg.register("a", widget)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", widget)


def test_unknown_name_suggests_the_closest():
    reg = make()
    reg.register("pgd", widget)
    reg.register("fgsm", widget)
    with pytest.raises(UnknownComponent, match=r"unknown widget 'pdg'; did you mean 'pgd'\?"):
        reg.create("pdg")
    assert isinstance(UnknownComponent("x"), UserError)


def test_unknown_parameter_is_a_user_error_naming_it():
    reg = make()
    reg.register("widget", widget)
    with pytest.raises(UserError, match=r"unknown parameter 'sise'; did you mean 'size'\?"):
        reg.create("widget", sise=3)
    with pytest.raises(UserError, match="unknown parameter 'sise'"):
        reg.check("widget", {"sise": 3})
    reg.check("widget", {"size": 3})  # no error


def test_context_values_are_passed_only_when_the_factory_takes_them():
    reg = make()
    reg.register("widget", widget)
    reg.register("plain", lambda: "plain")
    assert reg.create("widget", context={"size": 5, "unrelated": 1}) == (5, "red")
    assert reg.create("widget", size=2, context={"size": 5}) == (2, "red")
    assert reg.create("plain", context={"size": 5}) == "plain"


def test_list_filters_with_wildcards_and_sorts_naturally():
    reg = make()
    for name in ("resnet10", "resnet9", "pgd", "pgd-l2", "fgsm"):
        reg.register(name, widget)
    assert reg.list() == ["fgsm", "pgd", "pgd-l2", "resnet9", "resnet10"]
    assert reg.list("pgd*") == ["pgd", "pgd-l2"]
    assert reg.list("nothing*") == []


def test_lazy_entries_import_on_first_use(tmp_path, monkeypatch):
    (tmp_path / "lazy_widget_mod.py").write_text("def make(*, n=1):\n    return ('lazy', n)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = make()
    reg.register("lazy", "lazy_widget_mod:make")
    assert "lazy_widget_mod" not in sys.modules
    assert reg.list() == ["lazy"]
    assert "lazy_widget_mod" not in sys.modules  # listing does not import
    assert reg.create("lazy", n=2) == ("lazy", 2)


def test_prefix_families_and_import_paths(tmp_path, monkeypatch):
    (tmp_path / "user_factories.py").write_text("def build(*, width=4):\n    return ('user', width)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = make(import_paths=True)
    reg.register_prefix("fam", lambda name, *, depth=1: (name, depth), lister=lambda pattern: ["alpha", "beta"])
    assert reg.create("fam:alpha", depth=3) == ("alpha", 3)
    assert "fam:anything" in reg
    assert reg.list("fam:*") == ["fam:alpha", "fam:beta"]
    assert reg.create("user_factories:build", width=8) == ("user", 8)
    with pytest.raises(UserError, match="unknown parameter 'height'"):
        reg.create("user_factories:build", height=8)
    with pytest.raises(UserError, match="cannot import 'no_such_module_xyz'"):
        reg.create("no_such_module_xyz:build")
    plain = make()
    with pytest.raises(UnknownComponent):
        plain.create("user_factories:build")  # import paths only where the registry allows them


def test_entry_point_plugins_register_components(tmp_path, monkeypatch):
    """A package that declares `frontier_bench.widgets` entry points adds components without editing us."""
    (tmp_path / "widget_plugin.py").write_text("def special(*, level=0):\n    return ('plugin', level)\n")
    dist = tmp_path / "widget_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: widget-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("[frontier_bench.widgets]\nspecial = widget_plugin:special\n"))
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = make(entry_points="frontier_bench.widgets")
    assert reg.list() == ["special"]
    assert reg.create("special", level=2) == ("plugin", 2)


def test_freeze_refuses_new_registrations():
    reg = make()
    reg.register("a", widget)
    reg.freeze()
    with pytest.raises(RuntimeError, match="frozen"):
        reg.register("b", widget)
    assert reg.create("a") == (1, "red")


def test_the_global_registries_hold_the_contract_names():
    from attacks import ATTACKS
    from bench.data import DATASETS
    from bench.tracks import TRACKS
    from defenses import DEFENSES
    from models import MODELS

    assert {"fgsm", "pgd", "pgd-l2"} <= set(ATTACKS.list())
    assert {"small-cnn", "mlp"} <= set(MODELS.list())
    assert "timm:resnet18" in MODELS and "torchvision:resnet18" in MODELS
    assert {"digits", "mnist-5k", "mnist", "fashion-mnist", "cifar10"} <= set(DATASETS.list())
    assert "none" in DEFENSES.list()
    assert "adversarial" in TRACKS.list()
    assert ATTACKS.list("pgd*") == ["pgd", "pgd-l2"]
