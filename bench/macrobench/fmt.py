"""The item each signal counts, and how figures are written in the report."""


ITEM = {"traces": "spans", "metrics": "data points"}


def fmt_rate(r):
    if r == 0:
        return "unlimited"
    return f"{r / 1000:.0f}k" if r >= 1000 else f"{r:.0f}"


def fmt_num(x, digits=0):
    if x is None or x != x:
        return "–"
    return f"{x:,.{digits}f}"


def ratio(a, b):
    return a / b if a and b and a == a and b == b else float("nan")
