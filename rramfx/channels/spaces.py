"""Union-find over channel spaces: layouts, pins, refinement and unification."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

__all__ = [
    "PIN_BROADCAST",
    "PIN_INPUT",
    "PIN_KEPT",
    "PIN_OUTPUT",
    "PIN_SHAPE",
    "PIN_UNSUPPORTED",
    "Layout",
    "Mismatch",
    "Seg",
    "Spaces",
]

Seg = tuple[int, int]  # (space id, inner)
Layout = tuple[Seg, ...]

# Why a space is pinned. Input, output, broadcast and shape pins are the model's nature; the others
# mean an operation the analysis could not see through, or channels kept on request.
PIN_INPUT = "model input"
PIN_OUTPUT = "model output"
PIN_BROADCAST = "broadcast"
PIN_SHAPE = "shape"  # spatial sizes, stacked dims, new axes: sizes that are not channels
PIN_UNSUPPORTED = "unsupported"
PIN_KEPT = "kept"


class Mismatch(Exception):
    """Two layouts cannot be made to agree (internal; turned into a PassError naming the node)."""


# ---- spaces --------------------------------------------------------------------------------------

class Spaces:
    """Union-find over channel spaces, with refinement of a space into consecutive parts."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.size: list[int] = []
        self.origin: list[str] = []
        self.children: dict[int, list[Seg]] = {}
        self.pinned: dict[int, tuple[str, str]] = {}  # root -> (kind, reason)
        self.producers: dict[int, set[str]] = {}  # root -> layers that compute it

    def new(self, size: int, origin: str, pin: tuple[str, str] | None = None, producer: str | None = None) -> int:
        i = len(self.parent)
        self.parent.append(i)
        self.size.append(int(size))
        self.origin.append(origin)
        if pin is not None:
            self.pinned[i] = pin
        if producer is not None:
            self.producers[i] = {producer}
        return i

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    # flags flow from a space to the parts it is refined into
    def _push(self, root: int) -> None:
        pin, prod = self.pinned.get(root), self.producers.get(root)
        for child, _ in self.children.get(root, ()):
            c = self.find(child)
            changed = False
            if pin is not None and c not in self.pinned:
                self.pinned[c] = pin
                changed = True
            if prod and not prod <= self.producers.get(c, set()):
                self.producers[c] = self.producers.get(c, set()) | prod
                changed = True
            if changed:
                self._push(c)

    def pin(self, x: int, kind: str, reason: str) -> None:
        r = self.find(x)
        if r not in self.pinned:
            self.pinned[r] = (kind, reason)
        self._push(r)

    def pin_layout(self, layout: Layout, kind: str, reason: str) -> None:
        for s, _ in layout:
            self.pin(s, kind, reason)

    def add_producer(self, x: int, name: str) -> None:
        r = self.find(x)
        self.producers.setdefault(r, set()).add(name)
        self._push(r)

    def refine(self, root: int, parts: list[Seg]) -> None:
        self.children[root] = parts
        self._push(root)

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a == b:
            return
        if self.size[a] != self.size[b]:
            raise Mismatch(f"sizes {self.size[a]} and {self.size[b]}")
        self.parent[b] = a
        pb = self.pinned.pop(b, None)
        if pb is not None and a not in self.pinned:
            self.pinned[a] = pb
        prod_b = self.producers.pop(b, None)
        if prod_b:
            self.producers[a] = self.producers.get(a, set()) | prod_b
        ca, cb = self.children.get(a), self.children.pop(b, None)
        if ca is None and cb is not None:
            self.children[a] = cb
        self._push(a)
        if ca is not None and cb is not None:
            self.unify(tuple(ca), tuple(cb))
            self._push(a)

    # layouts
    def expand(self, layout: Iterable[Seg]) -> list[Seg]:
        """A layout in terms of unrefined spaces (roots)."""
        out: list[Seg] = []
        stack = list(reversed(list(layout)))
        while stack:
            s, inner = stack.pop()
            r = self.find(s)
            parts = self.children.get(r)
            if parts is None:
                out.append((r, inner))
            else:
                stack.extend(reversed([(c, ci * inner) for c, ci in parts]))
        return out

    def numel(self, layout: Iterable[Seg]) -> int:
        return sum(self.size[self.find(s)] * inner for s, inner in layout)

    def _split(self, root: int, n: int) -> tuple[int, int]:
        a = self.new(n, self.origin[root] + f"[:{n}]")
        b = self.new(self.size[root] - n, self.origin[root] + f"[{n}:]")
        self.refine(root, [(a, 1), (b, 1)])
        return a, b

    def _group(self, root: int, k: int) -> list[Seg]:
        m, rest = divmod(self.size[root], k)
        c = self.new(m, self.origin[root] + f"/{k}")
        parts = [(c, k)]
        if rest:
            parts.append((self.new(rest, self.origin[root] + f"[{m * k}:]"), 1))
        self.refine(root, parts)
        return parts

    def unify(self, l1: Layout, l2: Layout) -> None:
        """Make two layouts of the same dimension agree, refining spaces where needed."""
        if self.numel(self.expand(l1)) != self.numel(self.expand(l2)):
            raise Mismatch(f"{self.numel(self.expand(l1))} vs {self.numel(self.expand(l2))} elements")
        q1, q2 = deque(self.expand(l1)), deque(self.expand(l2))
        while q1 and q2:
            (a, ia), (b, ib) = q1[0], q2[0]
            a, b = self.find(a), self.find(b)
            if a in self.children:
                q1.popleft()
                q1.extendleft(reversed(self.expand([(a, ia)])))
                continue
            if b in self.children:
                q2.popleft()
                q2.extendleft(reversed(self.expand([(b, ib)])))
                continue
            if ia == ib:
                na, nb = self.size[a], self.size[b]
                if na == nb:
                    self.union(a, b)
                    q1.popleft()
                    q2.popleft()
                elif na < nb:
                    b1, b2 = self._split(b, na)
                    q2[0] = (b2, ib)
                    q2.appendleft((b1, ib))
                else:
                    a1, a2 = self._split(a, nb)
                    q1[0] = (a2, ia)
                    q1.appendleft((a1, ia))
                continue
            # different inner sizes: the finer side is grouped into blocks of the coarser one
            if ia < ib:
                q1, q2, (a, ia), (b, ib) = q2, q1, (b, ib), (a, ia)
            if ia % ib or self.size[b] * ib < ia:
                raise Mismatch(f"a block of {ia} elements against blocks of {ib}")
            parts = self._group(b, ia // ib)
            q2.popleft()
            q2.extendleft(reversed([(c, ci * ib) for c, ci in parts]))
        if q1 or q2:
            raise Mismatch("layouts of different length")
