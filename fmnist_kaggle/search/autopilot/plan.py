"""`fkaggle auto --show-plan`'s rows: each purchase as plain data (the CLI prints them)."""

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
        "continues": p.continues,  # the run whose fold models it starts from ("1": this plan's first)
        "total_epochs": round(p.total_epochs, 2),
        "steps": p.steps,
        "minutes": round(p.seconds / 60, 2),
        "expected_acc": None if p.expected_acc is None else round(p.expected_acc, 4),
        "train_img_s": round(o.speed.train_ips),
        "precision": o.speed.precision,
    }
