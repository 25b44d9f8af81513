"""The cluster explorer of notebook 03, driven in a real JupyterLab by headless Chromium (issue 8).

Each test opens a notebook from a copy of ``notebooks/``, clears it, runs all cells, waits for the live
sliders, then moves the segment-count slider and the ``max_d`` slider through their editable readouts
and checks what an analyst would see: the plots are redrawn in place, the reported count follows, and
the count slider shows the number of segments the ``max_d`` value implies (asked of the kernel,
silently, from the linkage: not from the widget callbacks). Screenshots of the explorer before and
after each move go to ``reports/ui/``.

The stand-in tests check the harness on a small explorer generated here (``standin_explorer.py``),
including that a broken slider callback is caught. See docs/ui-testing.md.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import nbformat
import pytest

from ._lab import LabServer, open_notebook, run_all_cells

pytestmark = pytest.mark.ui

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Spec:
    """What the test needs to know about an explorer.

    ``count`` and ``max_d`` are the slider descriptions; ``reported`` finds the segment count in the
    explorer's text outside the sliders; ``implied`` is a kernel expression for the number of segments
    of the cut at ``{max_d}``; ``reachable`` one that is true when some distance gives exactly ``{k}``
    segments (false for tied merge heights, where the explorer shows the tied height instead).
    """

    notebook: str
    count: str
    max_d: str
    reported: str
    implied: str
    reachable: str


STANDIN = Spec("standin.ipynb", count="segments", max_d="max_d", reported=r"(\d+) segments?",
               implied="k_at({max_d})", reachable="k_at(d_for({k})) == {k}")
#: Notebook 03 shows ``explorer = ClusterExplorer.from_clustering(...)``; its caption reads
#: "8 segments, max_d = 1.234"; the oracle cuts ``explorer.Z`` with seglib.cluster.
_CLUSTER = "__import__('seglib.cluster').cluster"
NOTEBOOK_03 = Spec(
    "03-cluster-prototypes.ipynb", count="segments", max_d="max_d", reported=r"(\d+) segments, max_d",
    implied=f"{_CLUSTER}.n_clusters_for_distance(explorer.Z, {{max_d}})",
    reachable=f"{_CLUSTER}.distance_range_for_k(explorer.Z, {{k}}) is not None")

# JS: the explorer's state as the page shows it, read at once. Slider values come from the handle's
# aria-valuetext (the full value the front-end holds), the readout is what the user sees; plots are
# the contents of every image (data: or blob: URL) and canvas, so a redraw of the same picture is no
# change and a new picture is one.
_STATE_JS = """async (area, names) => {
    const sliders = [...area.querySelectorAll('.widget-slider')];
    const find = n => sliders.find(s =>
        (s.querySelector('label.widget-label') || {}).textContent?.trim().replace(/:$/, '') === n);
    const slider = n => { const s = find(n); if (!s) return null;
        const h = s.querySelector('.noUi-handle');
        return {value: h.getAttribute('aria-valuetext'), min: h.getAttribute('aria-valuemin'),
                max: h.getAttribute('aria-valuemax'),
                readout: s.querySelector('.widget-readout').textContent.trim()}; };
    const text = [];
    const walk = node => { if (node.nodeType === Node.TEXT_NODE) text.push(node.textContent);
        else if (!node.classList?.contains('widget-slider')) node.childNodes.forEach(walk); };
    walk(area);
    const bytes = async src => { if (src.startsWith('data:')) return src;
        const data = new Uint8Array(await (await fetch(src)).arrayBuffer());
        let s = ''; for (const b of data) s += String.fromCharCode(b); return s; };
    const plots = await Promise.all([...area.querySelectorAll('img')].map(i => bytes(i.src)));
    return {count: slider(names[0]), max_d: slider(names[1]), text: text.join(' '),
            plots: plots.concat([...area.querySelectorAll('canvas')].map(c => c.toDataURL()))};
}"""


@dataclass(frozen=True)
class State:
    """What the page shows: slider values (and readouts), the reported count, plot fingerprints."""

    count: int
    count_range: tuple[int, int]
    count_readout: str
    max_d: float
    max_d_readout: str
    reported: int | None
    plots: tuple[str, ...]

    def __str__(self) -> str:
        return (f"count slider {self.count} (readout {self.count_readout}), max_d {self.max_d} "
                f"(readout {self.max_d_readout}), reported count {self.reported}, "
                f"{len(self.plots)} plot(s) {[p[:8] for p in self.plots]}")


class Explorer:
    """The explorer's output area in the page, and the kernel behind it."""

    def __init__(self, page, lab: LabServer, spec: Spec):
        self.page, self.lab, self.spec = page, lab, spec
        cell = page.locator(".jp-CodeCell").filter(has=page.locator(".widget-slider")).last
        self.area = cell.locator(".jp-Cell-outputArea")

    def state(self) -> State:
        raw = self.area.evaluate(_STATE_JS, [self.spec.count, self.spec.max_d])
        for name in ("count", "max_d"):
            if raw[name] is None:
                raise AssertionError(f"no slider described {getattr(self.spec, name)!r} in the explorer")
        found = re.search(self.spec.reported, raw["text"])
        c, d = raw["count"], raw["max_d"]
        return State(int(float(c["value"])), (int(float(c["min"])), int(float(c["max"]))), c["readout"],
                     float(d["value"]), d["readout"], int(found.group(1)) if found else None,
                     tuple(hashlib.sha1(p.encode()).hexdigest() for p in raw["plots"]))

    def set(self, name: str, value) -> None:
        """Type ``value`` into the slider's readout and press Enter, as a user would."""
        label = self.page.locator("label.widget-label", has_text=re.compile(rf"^\s*{re.escape(name)}:?\s*$"))
        readout = self.area.locator(".widget-slider").filter(has=label).locator(".widget-readout")
        readout.fill(str(value))
        readout.press("Enter")
        readout.blur()  # leaves the readout as a user sees it after editing

    def wait(self, done, what: str, timeout: float = 20.0) -> State:
        """Poll until ``done(state)`` holds and the kernel is idle, then return the settled state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if done(state) and self.lab.kernel_state(self.spec.notebook) == "idle":
                settled = self.state()  # the kernel may have sent one more update while we asked
                if done(settled):
                    return settled
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not seen within {timeout:.0f} s; the page shows {state}")
            time.sleep(0.2)

    def implied(self, max_d: float) -> int:
        """Segments of the cut at ``max_d``, computed in the kernel from the linkage."""
        return int(self.lab.evaluate(self.spec.notebook, self.spec.implied.format(max_d=repr(max_d))))

    def reachable(self, k: int) -> bool:
        return self.lab.evaluate(self.spec.notebook, self.spec.reachable.format(k=k)) == "True"

    def check_agree(self, state: State) -> None:
        """The two sliders agree, the readouts show their values, the reported count is the slider's."""
        implied = self.implied(state.max_d)
        if state.count != implied:
            assert not self.reachable(state.count), (
                f"count slider shows {state.count}, but max_d = {state.max_d} gives {implied} segments")
        assert int(state.count_readout) == state.count, state
        assert math.isclose(float(state.max_d_readout), state.max_d, rel_tol=1e-3, abs_tol=6e-3), state
        assert state.reported == state.count, f"reported count differs from the count slider: {state}"

    def screenshot(self, path: Path) -> None:
        self.area.screenshot(path=str(path))


def write_standin(root: Path, name: str, extra: str | None = None) -> str:
    """Write the stand-in explorer notebook (and an ``extra`` last cell) into the served folder."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Stand-in explorer (UI harness self-test)"),
                nbformat.v4.new_code_cell((HERE / "standin_explorer.py").read_text())]
    if extra:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    nbformat.write(nb, root / name)
    return name


def start_explorer(page, lab: LabServer, spec: Spec, timeout: float = 120.0) -> Explorer:
    """Open the notebook, clear it, run all cells, wait for the live sliders."""
    open_notebook(page, lab, spec.notebook)
    run_all_cells(page, lab, spec.notebook, timeout)
    explorer = Explorer(page, lab, spec)
    explorer.area.locator(".widget-slider").first.wait_for()
    return explorer


def redrawn(before: State, after: State) -> bool:
    """The picture changed, and the plots were replaced, not appended below the old ones."""
    return after.plots != before.plots and len(after.plots) == len(before.plots)


def move_count(explorer: Explorer, before: State, timeout: float = 20.0) -> State:
    """Move the count slider to a neighbouring count that some distance gives: max_d, the reported
    count and the plots must follow."""
    low, high = before.count_range
    candidates = [before.count + 1, before.count - 1, before.count + 2, before.count - 2]
    k = next((k for k in candidates if low <= k <= high and explorer.reachable(k)), None)
    assert k is not None, f"no count near {before.count} within {before.count_range} that a distance gives"
    explorer.set(explorer.spec.count, k)
    return explorer.wait(
        lambda s: s.count == k and s.reported == k and s.max_d != before.max_d and redrawn(before, s),
        f"after setting {explorer.spec.count!r} to {k}: reported count {k}, max_d moved from "
        f"{before.max_d}, {len(before.plots)} plot(s) redrawn in place", timeout)


def move_max_d(explorer: Explorer, target: float, before: State, timeout: float = 20.0) -> State:
    """Type ``target`` into max_d: the count slider must jump to what that cut implies, plots redraw."""
    k = explorer.implied(target)
    explorer.set(explorer.spec.max_d, repr(target))
    return explorer.wait(
        lambda s: s.count == k and s.reported == k and redrawn(before, s),
        f"after setting {explorer.spec.max_d!r} to {target}: count slider and reported count {k}, "
        f"{len(before.plots)} plot(s) redrawn in place", timeout)


def exercise(explorer: Explorer, shots: Path) -> None:
    """The scenario: count to a neighbour, then max_d back to where it was; screenshots at each step."""
    stem = Path(explorer.spec.notebook).stem
    before = explorer.state()
    explorer.screenshot(shots / f"{stem}-1-before.png")
    assert before.plots, f"the explorer shows no plot: {before}"
    explorer.check_agree(before)

    after_count = move_count(explorer, before)
    explorer.screenshot(shots / f"{stem}-2-after-count.png")
    explorer.check_agree(after_count)

    after_max_d = move_max_d(explorer, before.max_d, after_count)
    explorer.screenshot(shots / f"{stem}-3-after-max_d.png")
    explorer.check_agree(after_max_d)
    assert after_max_d.count == before.count, (before, after_max_d)


def test_standin_explorer(page, lab, lab_root, artifacts):
    """The harness itself, on the stand-in: live sliders, both moves followed, plots redrawn."""
    write_standin(lab_root, STANDIN.notebook)
    exercise(start_explorer(page, lab, STANDIN), artifacts)


def test_broken_callback_is_caught(page, lab, lab_root):
    """With the count slider's observers removed, moving it must fail the check (max_d stays)."""
    spec = replace(STANDIN, notebook="standin-broken.ipynb")
    write_standin(lab_root, spec.notebook, extra=(
        "# break the callback: remove every observer of the IntSliders' value\n"
        "from ipywidgets.widgets.widget import _instances\n"
        "for w in list(_instances.values()):\n"
        "    if isinstance(w, widgets.IntSlider):\n"
        "        w.unobserve_all('value')\n"))
    explorer = start_explorer(page, lab, spec)
    before = explorer.state()
    explorer.check_agree(before)
    with pytest.raises(AssertionError, match="max_d moved"):
        move_count(explorer, before, timeout=3)
    after = explorer.state()
    assert after.count != before.count, "the front-end did not even move the slider"
    with pytest.raises(AssertionError, match="gives"):
        explorer.check_agree(after)


def test_cluster_explorer(page, lab, lab_root, artifacts):
    """Notebook 03 in JupyterLab: both sliders move, follow each other, and redraw the explorer."""
    spec = NOTEBOOK_03
    assert (lab_root / spec.notebook).is_file(), f"notebooks/{spec.notebook} is missing"
    explorer = start_explorer(page, lab, spec, timeout=300)
    kind = lab.evaluate(spec.notebook, "type(explorer).__name__")
    assert kind == "'ClusterExplorer'", f"`explorer` in {spec.notebook} is a {kind}, not the ClusterExplorer"
    exercise(explorer, artifacts)
