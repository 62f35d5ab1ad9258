"""The VTS 2024 paper's Table II (latency and energy of widened networks on a 64-chip ISAAC, normalised
to width 1) and its reproduction with `rramfx.cost.estimate_cost`.

The paper costs a network with ISAAC's efficiencies "with respect to the width of networks", and its
MobileNetV2 ratio grows like width² (1.41x at width 1.2), so it counts the 1x1 convolutions' MACs too,
although its own placement runs them on the host. Each row therefore carries three ratios:

- ``latency``/``energy``: every weighted layer at ISAAC's rates (``all_on="rram"``), the paper's
  accounting and the one compared with the paper;
- ``rram_*``: only the layers the paper's policy puts on RRAM (k x k convolutions), at ISAAC's rates;
- ``system_*``: the paper's placement with the host layers on `rramfx.Hardware`'s CPU.

For ResNet20 and VGG13 the first two agree within 0.1% (their RRAM layers hold > 99% of the MACs);
for MobileNetV2, whose RRAM layers are depthwise (MACs linear in width), they do not.
docs/cost-model.md discusses the numbers; ``reproduction/cost_table.py`` prints them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from rramfx.cost.estimate import CostReport, Hardware, estimate_cost
from rramfx.policy import Policy
from rramfx.tables import table_lines

__all__ = [
    "MOBILENET_ROUNDED_TO_8",
    "PAPER_TABLE2",
    "TABLE2_CONFIGS",
    "Table2Config",
    "Table2Row",
    "table2_markdown",
    "table2_rows",
]

#: Table II as printed: (model, width) -> (latency, energy). The printed units ("latency (s), energy
#: (kW)") cannot both be right; only the ratios to width 1 are compared.
PAPER_TABLE2: dict[tuple[str, float], tuple[float, float]] = {
    ("resnet20", 1.0): (15.74, 113.32), ("resnet20", 1.2): (22.13, 159.28),
    ("resnet20", 1.4): (29.80, 214.53), ("resnet20", 1.6): (39.11, 281.56),
    ("mobilenetv2", 1.0): (0.68, 4.89), ("mobilenetv2", 1.2): (0.96, 6.93),
    ("vgg13", 1.0): (87.83, 632.16), ("vgg13", 1.2): (125.25, 901.56),
    ("vgg13", 1.4): (170.59, 1227.84), ("vgg13", 1.6): (222.53, 1601.71),
}


@dataclass(frozen=True)
class Table2Config:
    """A network of Table II: a reference model name, keyword arguments for `rramfx.models.create`,
    and the widths to cost; ``label`` names it in tables."""

    label: str
    model: str
    widths: tuple[float, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)


#: The paper's networks. MobileNetV2 widens every layer by the same fraction (``round_nearest=1``), as
#: the paper's widening ("p is the percentage increase in the number of channels") does.
TABLE2_CONFIGS: tuple[Table2Config, ...] = (
    Table2Config("ResNet20", "resnet20", (1.2, 1.4, 1.6)),
    Table2Config("VGG13", "vgg13", (1.2, 1.4, 1.6)),
    Table2Config("MobileNetV2", "mobilenetv2", (1.2,), {"round_nearest": 1}),
)
#: MobileNetV2 with MobileNet's own channel rounding (multiples of 8): for comparison, not the paper's.
MOBILENET_ROUNDED_TO_8 = Table2Config("MobileNetV2 (channels rounded to 8)", "mobilenetv2", (1.2,),
                                      {"round_nearest": 8})


@dataclass(frozen=True)
class Table2Row:
    """One widened network: the paper's ratios to width 1 and the cost model's (see the module doc)."""

    label: str
    model: str
    width: float
    paper_latency: float
    paper_energy: float
    latency: float
    energy: float
    rram_latency: float
    rram_energy: float
    system_latency: float
    system_energy: float

    @property
    def latency_diff(self) -> float:
        """Relative difference of the modelled latency ratio from the paper's (0.01 = 1%)."""
        return self.latency / self.paper_latency - 1.0

    @property
    def energy_diff(self) -> float:
        return self.energy / self.paper_energy - 1.0


def _reports(config: Table2Config, width: float, hardware: Hardware, size: int) -> tuple[CostReport, CostReport]:
    from rramfx.models import create
    from rramfx.preparation import prepare

    with torch.random.fork_rng(devices=[]):  # fresh weights, without moving the caller's RNG
        model = create(config.model, num_classes=10, in_chans=3, width=width, **config.kwargs).eval()
        gm = prepare(model, Policy())
    x = torch.zeros(1, 3, size, size)
    return estimate_cost(gm, x, hardware), estimate_cost(gm, x, hardware, all_on="rram")


def table2_rows(configs: Iterable[Table2Config] = TABLE2_CONFIGS, hardware: Hardware | None = None,
                input_size: int = 32) -> list[Table2Row]:
    """Cost every configuration at width 1 and its widths (on CIFAR-sized inputs, prepared with the
    paper's policy, `rramfx.Policy()`) and return the ratios to width 1 beside the paper's."""
    hw = Hardware() if hardware is None else hardware
    rows = []
    for config in configs:
        base_placed, base_all = _reports(config, 1.0, hw, input_size)
        for width in config.widths:
            placed, every = _reports(config, width, hw, input_size)
            p0, p1 = PAPER_TABLE2[(config.model, 1.0)], PAPER_TABLE2[(config.model, width)]
            r0, r1 = base_placed.per_device["rram"], placed.per_device["rram"]
            rows.append(Table2Row(
                config.label, config.model, width, p1[0] / p0[0], p1[1] / p0[1],
                every.total.latency_s / base_all.total.latency_s, every.total.energy_j / base_all.total.energy_j,
                r1.latency_s / r0.latency_s, r1.energy_j / r0.energy_j,
                placed.total.latency_s / base_placed.total.latency_s,
                placed.total.energy_j / base_placed.total.energy_j))
    return rows


def table2_markdown(rows: Iterable[Table2Row]) -> str:
    """The rows as a markdown table (ratios to width 1; differences from the paper in %)."""
    header = ["model", "width", "latency", "energy", "paper latency", "paper energy", "diff latency",
              "diff energy", "RRAM layers only", "with host"]
    cells = [[r.label, f"{r.width:g}", f"{r.latency:.3f}", f"{r.energy:.3f}", f"{r.paper_latency:.3f}",
              f"{r.paper_energy:.3f}", f"{100 * r.latency_diff:+.1f}%", f"{100 * r.energy_diff:+.1f}%",
              f"{r.rram_latency:.3f}", f"{r.system_latency:.3f}"] for r in rows]
    lines = table_lines(header, cells, "<" + ">" * 9, markdown=True, pad=False)
    return "\n".join(lines)
