"""No module of the media service's call control reaches into another module's private members (issue 21:
`edge._arm`, `edge._open_rtp`, `service._endpoint` made edge.py, outbound.py, app.py and the features
depend on each other's insides). A name with a leading underscore read on anything but `self` or `cls`
must be defined in the same module (a helper class of that module may use its owner's); what another
module needs is a public member, named in the protocol it takes (InboundEdge, OutboundEdge, FeatureHost).
"""

from __future__ import annotations

import ast
from pathlib import Path

MEDIA = Path(__file__).resolve().parents[3] / "services" / "media"
CHECKED = [MEDIA / "app.py", *sorted((MEDIA / "ua").glob("*.py")), *sorted((MEDIA / "features").glob("*.py"))]
CHECKED += sorted((MEDIA / "front").glob("*.py"))
# The standard library's own: os._exit ends a fenced worker without a clean stop (front/link.py).
ALLOWED = {("os", "_exit")}


def reach_ins(source: str) -> list[str]:
    """`value._name` where `_name` is private, `value` is not self or cls, and the module defines no
    `_name` (a function, class, or attribute assigned)."""
    tree = ast.parse(source)
    own: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            own.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            own.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            own.add(node.id)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        value = node.value
        if isinstance(value, ast.Name) and (value.id in ("self", "cls") or (value.id, node.attr) in ALLOWED):
            continue
        if node.attr not in own:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_call_control_modules_use_public_members_of_each_other() -> None:
    assert len(CHECKED) > 20  # the folders are where this test thinks they are
    found = {path.relative_to(MEDIA).as_posix(): reach_ins(path.read_text()) for path in CHECKED}
    assert {name: hits for name, hits in found.items() if hits} == {}


def test_a_reach_in_is_found() -> None:
    source = "class Edge:\n    def _arm(self): ...\n"
    assert reach_ins(source + "def f(edge): edge._arm()\n") == []  # the module's own
    assert reach_ins("def f(edge): edge._arm()\n") == ["line 1: edge._arm"]
    assert reach_ins("def f(service): return service.host._endpoint\n") == ["line 1: service.host._endpoint"]
    assert reach_ins("class A:\n    def f(self): return self._x\n") == []
