"""`fkaggle auto --show-plan` in words: each purchase a row, the speeds it was sized from."""

from __future__ import annotations

from typing import Any

from fmnist_kaggle.search.autopilot.policy import Purchase


def plan_row(p: Purchase, index: int) -> dict[str, Any]:
    o = p.option
    return {
        "run": index + 1,
        "entry": o.entry.name,
        "width": o.width,
        "model": o.entry.config(o.width).model,
        "epochs": round(p.fractional_epochs, 2),
        "steps": p.steps,
        "minutes": round(p.seconds / 60, 2),
        "expected_acc": p.expected_acc,
        "train_img_s": o.speed.train_ips,
        "precision": o.speed.precision,
    }


def plan_table(plan: dict[str, Any]) -> str:
    keys = ["run", "entry", "model", "width", "epochs", "steps", "minutes", "expected_acc", "train_img_s", "precision"]
    lines = [
        f"{plan['rows']} rows, {plan['folds']} folds, {plan['limit_s'] / 60:g} min "
        f"with {plan['reserve_s']:.0f} s kept for choosing and writing"
    ]
    lines.append("  ".join(f"{k:<12}" for k in keys))
    lines += ["  ".join(f"{'' if r[k] is None else r[k]!s:<12}" for k in keys) for r in plan["purchases"]]
    if plan.get("nothing_fits"):
        lines.append(plan["nothing_fits"])
    lines += [
        "",
        "each row is a k-fold run bought after the ones above, if every run takes its estimate;",
        "expected_acc: held-out accuracy measured for that width and length on the real data (frontier.toml)",
    ]
    lines += ["", "speeds measured here (an autopilot session keeps them in oof/autopilot/speeds.json):"]
    lines += [
        f"  {s['entry']} width {s['width']}: {s['train_ips']:,.0f} training img/s, "
        f"{s['predict_ips']:,.0f} predicted img/s ({s['precision']})"
        for s in plan["speeds"]
    ]
    return "\n".join(lines)
