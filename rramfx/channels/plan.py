"""The widening plan: new sizes and index maps for every space of an analysis."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rramfx.channels.analysis import ChannelAnalysis
from rramfx.channels.spaces import PIN_KEPT, PIN_UNSUPPORTED, Layout
from rramfx.channels.values import Hazard
from rramfx.errors import PassError

__all__ = ["Kept", "WideningPlan"]


@dataclass
class Kept:
    """Channels that could have been widened but stay as they are, and why."""

    producers: list[str]
    size: int
    reason: str


class WideningPlan:
    """New sizes and index maps for every space of an analysis.

    ``factor`` multiplies every widenable space, rounded to a multiple of ``divisor`` per layer (a
    space that appears g times in a layer's output, as in grouped convolutions, rounds to
    ``divisor / gcd(divisor, g)``). With ``preserve_function`` the hazards are enforced: one with a
    remedy is listed in ``remedied`` (the pass applies it), any other raises a PassError
    (``on_unsupported="raise"``) or pins its channels (``"keep"``).
    Unsupported operations touching widenable channels are handled the same way.
    """

    def __init__(self, analysis: ChannelAnalysis, factor: float, divisor: int, preserve_function: bool,
                 on_unsupported: str) -> None:
        self.a = analysis
        self.S = analysis.S
        self.factor = factor
        self.divisor = divisor
        self.preserve = preserve_function
        self.keep = on_unsupported == "keep"
        self.kept: list[Kept] = []
        self.violated: list[Hazard] = []
        self.remedied: list[Hazard] = []
        self._resolve_barriers()
        while True:
            self._sizes()
            violated = [h for h in self.a.hazards if self._violates(h)]
            if not violated or not self.preserve:
                self.violated = violated
                self.remedied = [h for h in self.a.hazards if self._remedied(h)]
                break
            if not self.keep:
                raise PassError(self._hazard_message(violated[0], len(violated)))
            for h in violated:
                for s, _ in self.S.expand(h.layout):
                    if self.widened(s):
                        self._keep(s, f"node '{h.node}': {h.what}, so duplicated channels would change it")

    # ---- decisions ---------------------------------------------------------------------------------
    def _leaves(self) -> list[int]:
        return [i for i in range(len(self.S.parent)) if self.S.find(i) == i and i not in self.S.children]

    def widenable(self, s: int) -> bool:
        """Some layer produces the space and nothing pins it."""
        r = self.S.find(s)
        return bool(self.S.producers.get(r)) and r not in self.S.pinned

    def widened(self, s: int) -> bool:
        """The plan gives the space a new size."""
        r = self.S.find(s)
        return self.new_size[r] != self.S.size[r]

    def describe(self, s: int) -> str:
        """The space for error messages: its size and the layers that produce it."""
        prods = sorted(self.S.producers.get(self.S.find(s), ()))
        if not prods:
            return f"channels from {self.S.origin[self.S.find(s)]}"
        more = f" and {len(prods) - 3} more" if len(prods) > 3 else ""
        return f"the {self.S.size[self.S.find(s)]} channels produced by {', '.join(prods[:3])}{more}"

    def _keep(self, s: int, reason: str) -> None:
        r = self.S.find(s)
        if r in self.S.pinned:
            return
        self.kept.append(Kept(sorted(self.S.producers.get(r, ())), self.S.size[r], reason))
        self.S.pin(r, PIN_KEPT, reason)

    def _resolve_barriers(self) -> None:
        for b in self.a.barriers:
            touched = [s for lay in b.layouts for s, _ in self.S.expand(lay) if self.widenable(s)]
            if not touched:
                continue
            if not self.keep:
                raise PassError(
                    f"cannot widen through node '{b.node}': {b.what}. It is coupled to "
                    f"{self.describe(touched[0])}. Make that part traceable with known operations, "
                    "or pass on_unsupported='keep' to leave the channels it touches at their width."
                )
            for s in touched:
                self._keep(s, f"node '{b.node}': {b.what}")
        for r in self._leaves():
            pin = self.S.pinned.get(r)
            if pin and pin[0] == PIN_UNSUPPORTED and self.S.producers.get(r):
                if not self.keep:
                    raise PassError(
                        f"cannot widen {self.describe(r)}: {pin[1]} pins them. Pass "
                        "on_unsupported='keep' to leave them at their width."
                    )
                self.kept.append(Kept(sorted(self.S.producers[r]), self.S.size[r], pin[1]))

    def _sizes(self) -> None:
        units: dict[int, int] = {}
        for lay in self.a.producer_layouts:
            counts: dict[int, int] = {}
            for s, inner in self.S.expand(lay):
                counts[s] = counts.get(s, 0) + inner
            for s, c in counts.items():
                d = self.divisor // math.gcd(self.divisor, c)
                units[s] = math.lcm(units.get(s, 1), d)
        self.new_size: dict[int, int] = {}
        for r in self._leaves():
            n = self.S.size[r]
            if not self.widenable(r) or n == 0:
                self.new_size[r] = n
                continue
            d = units.get(r, 1)
            m = max(d, int(n * self.factor / d + 0.5) * d)
            while m < n:
                m += d
            self.new_size[r] = m

    def _violates(self, h: Hazard) -> bool:
        """The hazard changes the output and the pass cannot remedy it."""
        return self._inexact(h) and not (self.preserve and h.remedy is not None)

    def _remedied(self, h: Hazard) -> bool:
        """The hazard changes the output unless the pass applies its remedy (which it then does)."""
        return self.preserve and h.remedy is not None and self._inexact(h)

    def _inexact(self, h: Hazard) -> bool:
        leaves = self.S.expand(h.layout)
        ratios = {self.new_size[s] / self.S.size[s] for s, _ in leaves if self.S.size[s]}
        if ratios <= {1.0}:
            return False
        if not h.uniform_ok:
            return True
        return len(ratios) > 1 or not float(next(iter(ratios))).is_integer()

    def _hazard_message(self, h: Hazard, count: int) -> str:
        leaf = next(s for s, _ in self.S.expand(h.layout) if self.widened(s))
        more = f" ({count - 1} more such node(s))" if count > 1 else ""
        uniform = (" Only a whole-number factor duplicates every channel equally and keeps it exact."
                   if h.uniform_ok else "")
        return (
            f"widen_channels(preserve_function=True) cannot keep the output at node '{h.node}': {h.what}, "
            f"and widening {self.describe(leaf)} duplicates some of them, which changes the result.{uniform}{more} "
            "Use preserve_function=False (the widened model is trained from scratch), or "
            "on_unsupported='keep' to leave these channels at their width."
        )

    # ---- maps --------------------------------------------------------------------------------------
    def size_of(self, layout: Layout) -> int:
        """The widened number of elements of a layout."""
        return sum(self.new_size[s] * inner for s, inner in self.S.expand(layout))

    def old_size_of(self, layout: Layout) -> int:
        """The original number of elements of a layout."""
        return sum(self.S.size[s] * inner for s, inner in self.S.expand(layout))

    def index_map(self, layout: Layout) -> tuple[torch.Tensor, torch.Tensor]:
        """For each element of the widened dimension: the old element it copies, and how many copies
        that old element has (Net2WiderNet splits outgoing weights by it)."""
        src, cnt = [], []
        offset = 0
        for s, inner in self.S.expand(layout):
            n, m = self.S.size[s], self.new_size[s]
            j = torch.arange(m)
            ch = torch.where(j < n, j, (j - n) % max(n, 1))
            copies = torch.bincount(ch, minlength=n)[ch]
            t = torch.arange(inner)
            src.append((offset + ch[:, None] * inner + t[None, :]).reshape(-1))
            cnt.append(copies[:, None].expand(m, inner).reshape(-1))
            offset += n * inner
        if not src:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)
        return torch.cat(src), torch.cat(cnt)

    def changed(self, layout: Layout) -> bool:
        """True when some space of the layout is widened."""
        return any(self.new_size[s] != self.S.size[s] for s, _ in self.S.expand(layout))
