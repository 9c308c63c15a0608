"""NAS-Bench-Graph (Qin et al., NeurIPS 2022 Datasets and Benchmarks): a lookup table of 26,206 GNN architectures.

An architecture is a cell of four nodes: ``link`` (one of nine DAG shapes,
which earlier node each node reads from) and the operation of each node (GAT,
GCN, GIN, Cheb, SAGE, ARMA, k-GNN, a dense layer, or a skip connection; five
of them on ``proteins``). Isomorphic cells share one key, the package's own
``Arch.valid_hash``; the one all-skip cell is no architecture. Each was
trained on nine graph datasets with tuned hyperparameters; the table gives
validation and test accuracy, parameters (millions) and latency (seconds).

The tables ship inside the ``nas-bench-graph`` wheel and are read offline.
They are pickles: the package's ``light_read`` unpickles them as they are,
which runs whatever a pickle names; here they are read with an unpickler
that builds only dicts, numbers and numpy scalars (the table's contents),
so a replaced file is refused, not run.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources
from typing import Any

from bench.errors import UserError, require
from bench.tracks.nas.spaces import Arch, SearchSpace, finite

DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")
_SAFE = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}


class _TableUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refuses to load {module}.{name}: a NAS-Bench-Graph table holds only numbers")


@cache
def read_table(dataset: str) -> dict[int, dict[str, Any]]:
    """The table of one dataset (hash -> {valid_perf, perf, latency, para}), read safely from the installed package."""
    try:
        source = resources.files("nas_bench_graph") / "light" / f"{dataset}.bench"
    except ModuleNotFoundError:
        raise UserError("the nas-bench-graph space needs the nas-bench-graph package: pip install nas-bench-graph") from None
    try:
        with source.open("rb") as handle:
            table = _TableUnpickler(handle).load()
    except (OSError, pickle.UnpicklingError, EOFError) as error:
        raise UserError(f"NAS-Bench-Graph's table of {dataset} cannot be read ({error}); reinstall nas-bench-graph") from None
    return {int(key): dict(value) for key, value in table.items()}


class NASBenchGraph(SearchSpace):
    tabular = True
    measures = frozenset({"accuracy", "params", "latency"})

    def __init__(self, *, dataset: str = "cora") -> None:  # one of the nine datasets the table was trained on
        require(dataset in DATASETS, "dataset", f"must be one of {', '.join(DATASETS)}, got {dataset!r}")
        from nas_bench_graph.architecture import gnn_list, gnn_list_proteins, link_list

        self.dataset = dataset
        self.links = tuple(tuple(link) for link in link_list)
        self.ops = tuple(gnn_list_proteins if dataset == "proteins" else gnn_list)
        self.dimensions = (("link", self.links), *((f"op{i + 1}", self.ops) for i in range(4)))
        self._keys: dict[Arch, str | None] = {}

    @property
    def table(self) -> dict[int, dict[str, Any]]:
        return read_table(self.dataset)

    def identity(self) -> Any:
        import importlib.metadata as md

        return {"nas-bench-graph": md.version("nas-bench-graph"), "dataset": self.dataset}

    def canonical(self, arch: Arch) -> str | None:
        if arch not in self._keys:
            from nas_bench_graph.architecture import Arch as BenchArch

            key = BenchArch(list(self.links[arch[0]]), [self.ops[i] for i in arch[1:]]).valid_hash()
            self._keys[arch] = str(key) if key in self.table else None
        return self._keys[arch]

    def label(self, arch: Arch) -> str:
        return "".join(map(str, self.links[arch[0]])) + ":" + "-".join(self.ops[i] for i in arch[1:])

    def size(self) -> int:
        return len(self.table)

    def lookup(self, key: str) -> dict[str, Any]:
        return _results(self.table[int(key)])

    def entries(self) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        labels = self._labels()
        for key, row in self.table.items():
            yield str(key), labels.get(str(key), str(key)), _results(row)

    def _labels(self) -> dict[str, str]:
        return {key: self.label(arch) for key, arch in self.architectures()}


def _results(row: Mapping[str, Any]) -> dict[str, Any]:
    latency = finite(row.get("latency"))
    params = finite(row.get("para"))
    return {
        "val_accuracy": finite(row.get("valid_perf")),
        "test_accuracy": finite(row.get("perf")),
        "params": None if params is None else params * 1e6,  # the table counts millions
        "latency_ms": None if latency is None else latency * 1e3,
    }
