"""Checks of the IR's invariants, for tests of passes and of the IR itself.

>>> assert not use_def_problems(model)    # doctest: +SKIP
"""

from __future__ import annotations

from onnxgraph.graph import Graph
from onnxgraph.model import Model
from onnxgraph.value import Value


def _interface_problems(graph: Graph) -> list[str]:
    """The graph's input and output lists agree with each value's state."""
    problems = []
    where = f"graph '{graph.name}'"
    for container in (graph.inputs, graph.outputs):
        counts: dict[int, int] = {}
        for value in container:
            counts[id(value)] = counts.get(id(value), 0) + 1
        if counts != {id(v): n for v, n in container._counts.items()}:
            problems.append(f"{where}: the {container.kind} list and its membership index disagree")
    seen: set[int] = set()
    for value in graph.inputs:
        if id(value) in seen:
            problems.append(f"{where}: input {value.name!r} is listed twice")
        seen.add(id(value))
        if value.producer() is not None:
            problems.append(f"{where}: input {value.name!r} is written by {value.producer()!r}")
        if value._graph is not graph or not value.is_graph_input():
            problems.append(f"{where}: input {value.name!r} does not point back to its graph")
    return problems


def _graph_problems(graph: Graph, outer: set[int]) -> list[str]:
    """Problems of ``graph`` alone; ``outer`` holds the ids of the values enclosing graphs define."""
    problems = []
    forward = graph.nodes
    backward = []
    node = graph._last
    while node is not None:
        backward.append(node)
        node = node._prev
    if backward[::-1] != forward or len(forward) != len(graph):
        problems.append(f"graph '{graph.name}': node list links or length are inconsistent")
    values: dict[int, Value] = {id(v): v for v in graph.inputs}
    values.update((id(v), v) for v in graph.initializers.values())
    for node in forward:
        if node.graph is not graph:
            problems.append(f"{node!r} is listed in graph '{graph.name}' but points elsewhere")
        for i, value in enumerate(node.inputs):
            if value is not None and (node, i) not in value._uses:
                problems.append(f"{node!r} reads {value.name!r} at {i} but the value does not record that use")
        for i, value in enumerate(node.outputs):
            if value.producer() is not node or value.index() != i:
                problems.append(f"{node!r} output {i} ({value.name!r}) does not point back to its producer")
            values[id(value)] = value
    for value in values.values():
        for user, i in value._uses:
            if user.graph is None:
                problems.append(f"{value.name!r} records a use by {user!r}, which is in no graph")
            elif i >= len(user.inputs) or user.inputs[i] is not value:
                problems.append(f"{value.name!r} records a use by {user!r} at {i} that the node does not have")
    scope = outer | values.keys()
    for node in forward:
        for value in node.inputs:
            if value is not None and id(value) not in scope:
                problems.append(f"{node!r} reads {value.name!r}, which nothing in its scope defines")
    for value in graph.outputs:
        if id(value) not in scope:
            problems.append(f"graph '{graph.name}': output {value.name!r} is defined nowhere in its scope")
    problems += _interface_problems(graph)
    for node in forward:
        for sub in node.subgraphs():
            problems += _graph_problems(sub, scope)
    return problems


def use_def_problems(model: Model | Graph) -> list[str]:
    """Every broken invariant in ``model`` (all graphs, subgraphs and functions), as messages.

    Checked: node lists link both ways and match their length; every input read is recorded as a use
    and every recorded use is real; every value read or listed as a graph output is defined in its scope
    (this graph or an enclosing one); outputs point back to their producer; graph inputs belong to their
    graph, have no producer and are listed once, and the input and output lists agree with their
    membership index; value names are unique within each root graph's tree.
    """
    roots = [model] if isinstance(model, Graph) else [model.graph, *(f.graph for f in model.functions.values())]
    problems: list[str] = []
    for root in roots:
        problems += _graph_problems(root, set())
        seen: dict[str, Value] = {}
        for graph in root.all_graphs():
            named = [*graph.inputs, *graph.initializers.values(), *(v for n in graph for v in n.outputs)]
            for value in named:
                if value.name and seen.setdefault(value.name, value) is not value:
                    problems.append(f"value name {value.name!r} is defined twice")
    return problems
