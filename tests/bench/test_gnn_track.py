"""The GNN track: the published patterns hold through `bench run --track gnn`, and the track is a harness citizen.

PR-BCD beats DICE on a GCN (Geisler et al. 2021); the adaptive attack breaks
GCN-SVD where transferred perturbations do not (Mujkanovic et al. 2022) and
the row is flagged; every perturbed graph is verified against its threat
model (a broken attack's job is invalid); models not differentiable in their
edges are attacked by transfer and say so; kill and resume give the same
leaderboard; the CI gate holds the track; bad input is one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.store import Store
from bench.tracks.gnn.attacks import DICE, GRAPH_ATTACKS, edge_budget, flip
from bench.tracks.gnn.datasets import GRAPH_DATASETS
from bench.tracks.gnn.graphs import NodeGraph
from bench.tracks.gnn.threat import structure_violations
from tests.bench.test_resume import kill_after

TRAINING = """
[training]
epochs = 200
lr = 0.01
weight_decay = 5e-4
"""

TINY = (
    """
track = "gnn"
dataset = "csbm"
seeds = 3
executor = "serial"
[[models]]
name = "gcn"
[[defenses]]
name = "none"
[[attacks]]
name = "dice"
budget = [0.1]
[[attacks]]
name = "prbcd"
budget = [0.1]
"""
    + TRAINING
)

CHEAP_PRBCD = 'name = "prbcd"\nepochs = 20\nepochs_resampling = 10'  # a weak, fast PR-BCD: for tests of the plumbing
CHEAP = "prbcd(epochs=20, epochs_resampling=10)"  # its label


def run(spec: Path, out: Path, *args: str) -> int:
    return main(["run", "--config", str(spec), "--out", str(out), "-q", *args])


def cells(run_dir: Path, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["report", str(run_dir), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)["cells"]


def cell(found: list[dict], **labels) -> dict:
    matches = [c for c in found if all(c.get(k) == v for k, v in labels.items())]
    assert len(matches) == 1, (labels, [(c["model"], c["defense"], c["attack"], c["mode"], c["budget"]) for c in found])
    return matches[0]


def without_timing(found: list[dict]) -> list[dict]:
    """Cells minus wall-clock time (which no rerun reproduces)."""
    return [{**c, "seconds": None, "metrics": {k: v for k, v in c["metrics"].items() if k != "timing"}} for c in found]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("gnn")
    (folder / "spec.toml").write_text(TINY)
    assert run(folder / "spec.toml", folder / "run") == 0
    return folder


# -- what the literature found ---------------------------------------------------------
def test_prbcd_at_ten_percent_of_edges_takes_15_points_from_a_gcn_and_dice_takes_less(tiny, capsys):
    found = cells(tiny / "run", capsys)
    prbcd, dice = cell(found, attack="prbcd", mode="adaptive"), cell(found, attack="dice", mode="adaptive")
    assert prbcd["metrics"]["seeds"] == 3 and prbcd["status"] == "ok"
    clean = prbcd["metrics"]["clean_accuracy"]
    assert clean >= 0.85
    assert clean - prbcd["metrics"]["robust_accuracy"] >= 0.15
    assert clean - dice["metrics"]["robust_accuracy"] < clean - prbcd["metrics"]["robust_accuracy"]
    worst = cell(found, attack="worst-case")
    assert worst["metrics"]["robust_accuracy"] <= prbcd["metrics"]["robust_accuracy"]  # every node any attack broke counts as broken


def test_every_job_stores_its_flips_within_budget_and_per_node_outcomes(tiny):
    data = GRAPH_DATASETS.create("csbm")
    with Store(tiny / "run" / "results.db", create=False) as store:
        records, outcomes = store.records(), store.outcomes()
    for record in records:
        assert record.status == "ok"
        allowed = edge_budget(data, 0.1)
        assert record.metrics["allowed"] == allowed and record.metrics["changed"] == len(record.metrics["flips"]) <= allowed
        assert len(outcomes[record.key]) == int(data.test_mask.sum())
        assert all(u < v for u, v in record.metrics["flips"])


def test_the_adaptive_attack_breaks_gcn_svd_where_transferred_perturbations_do_not(tmp_path, capsys):
    spec = TINY.replace("seeds = 3", "seeds = 1").replace('[[attacks]]\nname = "dice"\nbudget = [0.1]\n', "")
    spec = spec.replace('[[defenses]]\nname = "none"', '[[defenses]]\nname = "none"\n[[defenses]]\nname = "svd"')
    (tmp_path / "spec.toml").write_text(spec)
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 0
    found = cells(tmp_path / "run", capsys)
    adaptive = cell(found, defense="svd", attack="prbcd", mode="adaptive")
    transfer = cell(found, defense="svd", attack="prbcd", mode="transfer")
    assert transfer["metrics"]["surrogate"] == "gcn"
    assert adaptive["metrics"]["robust_accuracy"] < transfer["metrics"]["robust_accuracy"] - 0.2  # Mujkanovic et al.'s pattern
    assert "gradient-masking" in adaptive["flags"] and "gradient-masking" in transfer["flags"]
    assert "gradient-masking" not in cell(found, defense="none", attack="prbcd")["flags"]
    with Store(tmp_path / "run" / "results.db", create=False) as store:
        transfer_job = next(r for r in store.records() if r.labels["mode"] == "transfer")
        assert "gradient-masking" in transfer_job.flags  # derived on the job too: the gate sees it
    page = (tmp_path / "run" / "leaderboard.html").read_text()
    assert "gradient-masking" in page


class OverBudget(DICE):
    """A broken attack: DICE with twice the flips it is allowed."""

    def perturb(self, model, graph, budget, *, targets, generator):
        return super().perturb(model, graph, 2 * budget, targets=targets, generator=generator)


class Directed(DICE):
    """A broken attack: inserts one edge in one direction only."""

    def perturb(self, model, graph, budget, *, targets, generator):
        row, col = graph.edge_index
        missing = next((u, v) for u in range(graph.num_nodes) for v in range(u + 1, graph.num_nodes) if not bool(((row == u) & (col == v)).any()))
        return graph.with_edges(torch.cat([graph.edge_index, torch.tensor([[missing[0]], [missing[1]]])], dim=1))


def test_a_perturbation_outside_its_threat_model_invalidates_the_job(tmp_path, capsys):
    spec = (
        TINY.replace("seeds = 3", "seeds = 1")
        .replace('name = "dice"', 'name = "tests.bench.test_gnn_track:OverBudget"')
        .replace('name = "prbcd"', 'name = "tests.bench.test_gnn_track:Directed"')
    )
    (tmp_path / "spec.toml").write_text(spec)
    run(tmp_path / "spec.toml", tmp_path / "run")
    with Store(tmp_path / "run" / "results.db", create=False) as store:
        records = {r.labels["attack"]: r for r in store.records()}
    over, directed = records["tests.bench.test_gnn_track:OverBudget"], records["tests.bench.test_gnn_track:Directed"]
    assert over.status == "invalid" and "threat-model-violated" in over.flags
    assert "edges flipped, budget" in over.error
    assert directed.status == "invalid" and "no longer undirected" in directed.error
    board = (tmp_path / "run" / "leaderboard.md").read_text()
    assert "threat-model-violated" in board


def test_structure_verification_names_each_kind_of_violation():
    graph = GRAPH_DATASETS.create("csbm")
    allowed = edge_budget(graph, 0.05)
    flips = DICE().perturb(None, graph, 0.05, targets=graph.test_nodes, generator=torch.Generator().manual_seed(0))
    assert structure_violations(graph, flips, allowed) == []
    (u, v) = graph.edge_index[:, 0].tolist()

    def added(*edges: tuple[int, int]) -> NodeGraph:
        return graph.with_edges(torch.cat([graph.edge_index, torch.tensor(edges).t()], dim=1))

    assert any("self loops" in p for p in structure_violations(graph, added((u, u)), allowed))
    assert any("duplicate" in p for p in structure_violations(graph, added((u, v), (v, u)), allowed))
    assert any("features changed" in p for p in structure_violations(graph, flips.with_features(graph.x + 1), allowed))
    pairs = torch.tensor([[0, 1, 2], [5, 6, 7]])
    assert structure_violations(graph, graph.with_edges(flip(graph, pairs)), 2) == ["3 edges flipped, budget 2"]


def test_models_not_differentiable_in_their_edges_are_attacked_by_transfer_from_the_stored_surrogate(tmp_path, capsys):
    spec = TINY.replace("seeds = 3", "seeds = 1").replace('[[attacks]]\nname = "dice"\nbudget = [0.1]\n', "").replace('name = "prbcd"', CHEAP_PRBCD)
    spec = spec.replace(
        '[[defenses]]\nname = "none"', '[[models]]\nname = "gat"\n[[models]]\nname = "mlp"\n[[defenses]]\nname = "none"\n[[defenses]]\nname = "median"'
    )
    (tmp_path / "spec.toml").write_text(spec)
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 0
    found = cells(tmp_path / "run", capsys)
    with Store(tmp_path / "run" / "results.db", create=False) as store:
        records = {(r.labels["model"], r.labels["defense"], r.labels["mode"]): r for r in store.records()}
    surrogate = records[("gcn", "none", "adaptive")]
    for target in (("gat", "none", "transfer"), ("gcn", "median", "transfer")):
        job = records[target]
        assert job.metrics["surrogate"] == "gcn" and "transfer-only" in job.flags
        assert job.metrics["flips"] == surrogate.metrics["flips"]  # the stored surrogate's flips, applied
    assert ("gat", "none", "adaptive") not in records
    assert not any(model in ("gat", "mlp") and defense == "median" for model, defense, _ in records)  # median changes gcn's aggregation only
    mlp = cell(found, model="mlp", attack=CHEAP)
    assert mlp["metrics"]["robust_accuracy"] == mlp["metrics"]["clean_accuracy"]  # the graph-free baseline cannot move


def test_your_own_graph_model_from_a_file_in_a_fresh_folder(tmp_path, capsys):
    (tmp_path / "mygnn.py").write_text(
        "from torch import nn\nfrom torch_geometric.nn import SGConv\n\n"
        "class Net(nn.Module):\n"
        "    edge_weights = True\n\n"
        "    def __init__(self, in_features, classes):\n"
        "        super().__init__()\n"
        "        self.conv = SGConv(in_features, classes, K=2)\n\n"
        "    def forward(self, x, edge_index, edge_weight=None, batch=None):\n"
        "        return self.conv(x, edge_index, edge_weight)\n\n\n"
        "def make(in_features, classes):\n"
        "    return Net(in_features, classes)\n"
    )
    spec = TINY.replace("seeds = 3", "seeds = 1").replace('name = "gcn"', 'name = "mygnn.py:make"').replace('name = "prbcd"', CHEAP_PRBCD)
    (tmp_path / "spec.toml").write_text(spec)
    os.chdir(tmp_path)
    assert run(Path("spec.toml"), Path("run")) == 0
    found = cells(tmp_path / "run", capsys)
    assert cell(found, attack=CHEAP, mode="adaptive")["metrics"]["clean_accuracy"] > 0.8


def test_poisoning_retrains_on_the_perturbed_graph(tmp_path, capsys):
    spec = (
        TINY.replace("seeds = 3", "seeds = 1\npoisoning = true")
        .replace('[[attacks]]\nname = "prbcd"\nbudget = [0.1]\n', "")
        .replace("budget = [0.1]", "budget = [0.5]")
    )
    (tmp_path / "spec.toml").write_text(spec)
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 0
    dice = cell(cells(tmp_path / "run", capsys), attack="dice")
    assert dice["metrics"]["robust_accuracy"] < dice["metrics"]["clean_accuracy"]


def test_adversarial_training_on_the_structure_trains_each_model_that_pr_bcd_can_attack(tmp_path, capsys):
    spec = TINY.replace("seeds = 3", "seeds = 1").replace('[[attacks]]\nname = "dice"\nbudget = [0.1]\n', "").replace('name = "prbcd"', CHEAP_PRBCD)
    at = '[[models]]\nname = "gat"\n[[defenses]]\nname = "none"\n[[defenses]]\nname = "prbcd-at"\nevery = 100\nattack_epochs = 5'
    (tmp_path / "spec.toml").write_text(spec.replace('[[defenses]]\nname = "none"', at))
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 0
    found = cells(tmp_path / "run", capsys)
    trained = cell(found, model="gcn", defense="prbcd-at(attack_epochs=5, every=100)", attack=CHEAP, mode="adaptive")
    plain = cell(found, model="gcn", defense="none", attack=CHEAP)
    assert trained["status"] == "ok" and trained["metrics"]["clean_accuracy"] != plain["metrics"]["clean_accuracy"]  # another model
    assert not [c for c in found if c["model"] == "gat" and c["defense"].startswith("prbcd-at")]  # gat cannot be attacked by PR-BCD


POINTS = """
track = "gnn"
dataset = "shapes"
seeds = 1
executor = "serial"
[[models]]
name = "pointnet"
[[models]]
name = "edgeconv"
hidden = 32
[[defenses]]
name = "none"
[[attacks]]
name = "point-perturb"
budget = [0.05]
[[attacks]]
name = "point-drop"
budget = [0.25]
[training]
epochs = 15
lr = 0.003
batch_size = 16
"""


def test_point_clouds_run_through_the_track_and_meet_the_graph_free_model_under_the_same_attack(tmp_path, capsys):
    (tmp_path / "spec.toml").write_text(POINTS)
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 0
    found = cells(tmp_path / "run", capsys)
    assert all(c["status"] == "ok" for c in found)  # every perturbed cloud passed the threat-model check
    for model in ("pointnet", "edgeconv(hidden=32)"):
        perturbed = cell(found, model=model, attack="point-perturb")["metrics"]
        assert perturbed["clean_accuracy"] >= 0.8 and perturbed["robust_accuracy"] < perturbed["clean_accuracy"]
    edgeconv, pointnet = cell(found, model="edgeconv(hidden=32)", attack="point-drop"), cell(found, model="pointnet", attack="point-drop")
    assert edgeconv["mlp_model"] == "pointnet" and edgeconv["mlp_accuracy"] == pointnet["metrics"]["robust_accuracy"]  # under the same attack


# -- a harness citizen ----------------------------------------------------------------
def test_kill_then_resume_gives_the_leaderboard_of_an_uninterrupted_run(tiny, tmp_path, capsys):
    killed = tmp_path / "killed"
    stored = kill_after(tiny / "spec.toml", killed, 1, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert 1 <= stored < 6
    assert run(tiny / "spec.toml", killed) == 0
    assert "already done" in capsys.readouterr().err
    assert without_timing(cells(killed, capsys)) == without_timing(cells(tiny / "run", capsys))


def test_the_gate_holds_the_track_to_its_baseline(tiny, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert main(["baseline", str(tiny / "run"), "-o", str(baseline)]) == 0
    rows = json.loads(baseline.read_text())["rows"]
    assert all("attack_seconds" not in row["metrics"] for row in rows)  # wall-clock time is never gated
    check = ["check", "--baseline", str(baseline), "--config", str(tiny / "spec.toml"), "--out", str(tiny / "run"), "-q"]
    assert main(check) == 0
    assert capsys.readouterr().out.startswith("bench check passed: ")
    data = json.loads(baseline.read_text())
    row = next(r for r in data["rows"] if r["attack"] == "prbcd")
    row["metrics"]["robust_accuracy"] += 0.1  # held to a better number than it reaches
    baseline.write_text(json.dumps(data))
    assert main(check) == 1
    assert "robust_accuracy" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('name = "prbcd"', 'name = "prbdc"'), "spec.attacks[1]: unknown graph attack 'prbdc'; did you mean 'prbcd' or 'grbcd'?"),
        (("budget = [0.1]", "budget = [1.5]"), "spec.attacks[0].budget: must be fractions in [0, 1], got 1.5"),
        (('dataset = "csbm"', 'dataset = "cbsm"'), "spec.dataset: unknown graph dataset 'cbsm'; did you mean 'csbm'?"),
        (('name = "gcn"', 'name = "gcn"\nhiden = 16'), "spec.models[0]: graph model 'gcn': unknown parameter 'hiden'; did you mean 'hidden'?"),
        (('name = "dice"', 'name = "point-perturb"'), "spec.attacks[0] (point-perturb): attacks graphs datasets; csbm is a nodes dataset"),
        (('name = "none"', 'name = "jacard"'), "did you mean 'jaccard'?"),
        (('dataset = "csbm"', 'dataset = { name = "planetoid", name_ = 1 }'), "spec.dataset"),
        (("seeds = 3", 'seeds = 3\nsurrogate = "gcnn"'), "spec.surrogate: must be a registered graph model name, got 'gcnn'"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, change, message):
    (tmp_path / "spec.toml").write_text(TINY.replace(*change, 1))
    assert run(tmp_path / "spec.toml", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run" / "results.db").exists()  # refused before anything was written


def test_the_graph_registries_are_listed(capsys):
    for kind, name in (("graphs", "csbm"), ("graph-models", "gcn"), ("graph-attacks", "prbcd"), ("graph-defenses", "svd")):
        assert main(["list", kind]) == 0
        assert name in capsys.readouterr().out
    assert set(GRAPH_ATTACKS.names()) >= {"random", "dice", "prbcd", "grbcd", "feature-pgd", "point-perturb", "point-drop"}
    assert isinstance(GRAPH_DATASETS.create("karate"), NodeGraph)
