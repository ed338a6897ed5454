"""The traces of a run, as Datadog's test agent returns them (`/test/traces`: a list of traces, each a
list of spans, grouped by trace id): which span is whose, which traces are requests, and whether each
trace is whole.

A request's trace, with loadgen reporting its own spans (`--trace-agent`), is loadgen's client span
(the root) -> the service's server span -> the server span's `mysql.query` spans. The service's own
work at start (the schema's CREATE TABLE) is a trace of its own, with no server span: "startup work",
kept apart from the requests. Standard library only.
"""

SERVER_SPAN = "http.server.request"
CLIENT_SPAN = "http.client.request"
QUERY_SPAN = "mysql.query"
LOADGEN = "loadgen"


def trace_id(trace):
    return str(trace[0].get("trace_id", "")) if trace else ""


def roots(trace):
    """The spans whose parent is no span of the trace."""
    ids = {span.get("span_id") for span in trace}
    return [span for span in trace if span.get("parent_id") not in ids]


def root_of(trace):
    return min(roots(trace) or trace, key=lambda span: span.get("start", 0))


def children_of(trace, span):
    return [s for s in trace if s.get("parent_id") == span.get("span_id") and s is not span]


def server_span(trace, service):
    """The service's request span (the first, should a trace have several), or None."""
    found = [s for s in trace if s.get("service") == service and s.get("name") == SERVER_SPAN]
    return min(found, key=lambda s: s.get("start", 0)) if found else None


def is_request(trace, service):
    return server_span(trace, service) is not None


def resource_of(trace, service):
    """The resource the service's page files the trace under: its server span's (`GET 404` for
    a path no route matched), else the root's."""
    span = server_span(trace, service) or root_of(trace)
    return span.get("resource", "")


def start(trace):
    return min(span.get("start", 0) for span in trace)


def duration(trace):
    return max(span.get("start", 0) + span.get("duration", 0) for span in trace) - start(trace)


def has_error(trace):
    return any(span.get("error") for span in trace)


def touches_database(trace):
    return any(span.get("name") == QUERY_SPAN for span in trace)


def services(trace):
    """The services of the trace's spans, in the order of the trace's tree (caller first)."""
    seen = []
    for _, span in in_tree_order(trace):
        if span.get("service") not in seen:
            seen.append(span.get("service"))
    return seen


def in_tree_order(trace):
    """(depth, span) pairs, each span after its parent, siblings by start time."""
    ids = {span.get("span_id") for span in trace}
    children = {}
    for span in trace:
        parent = span.get("parent_id") if span.get("parent_id") in ids else None
        children.setdefault(parent, []).append(span)
    ordered, stack = [], [(0, span) for span in sorted(children.get(None, []), key=lambda s: s.get("start", 0),
                                                        reverse=True)]
    while stack:
        depth, span = stack.pop()
        ordered.append((depth, span))
        stack += [(depth + 1, c) for c in sorted(children.get(span.get("span_id"), []),
                                                  key=lambda s: s.get("start", 0), reverse=True)]
    return ordered


def problems(trace, service):
    """What keeps the trace from being whole, as sentences (none: it is). Every trace: one root, with
    no parent id (0), and no span whose parent id no span of the trace carries. A request's trace
    also: the root is loadgen's client span, its one child the service's server span, whose children
    are `mysql.query` spans only, which have none."""
    found = []
    tops = roots(trace)
    if len(tops) != 1:
        found.append(f"{len(tops)} roots: {', '.join(describe(s) for s in tops)}")
    for span in tops:
        if span.get("parent_id"):
            found.append(f"{describe(span)} names parent {span['parent_id']}, which no span of the trace carries")
    if not is_request(trace, service) or len(tops) != 1:
        return found
    root = tops[0]
    if (root.get("service"), root.get("name")) != (LOADGEN, CLIENT_SPAN):
        found.append(f"the root is {describe(root)}, not loadgen's {CLIENT_SPAN}")
        return found
    below = children_of(trace, root)
    if [(s.get("service"), s.get("name")) for s in below] != [(service, SERVER_SPAN)]:
        found.append(f"under loadgen's span: {', '.join(describe(s) for s in below) or 'nothing'}, "
                     f"not one {service} {SERVER_SPAN}")
        return found
    for span in children_of(trace, below[0]):
        if span.get("name") != QUERY_SPAN:
            found.append(f"under the server span: {describe(span)}, not a {QUERY_SPAN}")
        elif children_of(trace, span):
            found.append(f"{describe(span)} has children")
    return found


def describe(span):
    return f"{span.get('service')} {span.get('name')} {span.get('resource')!r}"
