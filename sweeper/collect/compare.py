"""Comparing sweeps: per-configuration change against a baseline sweep, or a check against
reference figures with tolerances (as ReFrame checks performance references)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sweeper.collect.report import KEY_COLUMNS, load_results, results_frame

JOIN_COLUMNS = ["model", "system", "mode", "data", "batch_size", "instances", "precision"]


def load_table(source: Path) -> pd.DataFrame:
    """A results table from a results.csv file or from sweep directories' result.json files."""
    if source.is_file():
        frame = pd.read_csv(source)
    else:
        frame = results_frame(load_results([source]))
    for col in ("batch_size", "instances"):
        frame[col] = frame[col].astype("Int64")
    return frame


def compare(base: pd.DataFrame, new: pd.DataFrame, tolerance_pct: float) -> pd.DataFrame:
    """One row per configuration in both: base and new throughput, change in %, verdict."""
    keep = [*JOIN_COLUMNS, "status", "throughput"]
    merged = base[keep].merge(new[keep], on=JOIN_COLUMNS, how="outer", suffixes=("_base", "_new"))
    merged["change_pct"] = (merged["throughput_new"] / merged["throughput_base"] - 1) * 100

    def verdict(row: pd.Series) -> str:
        if pd.isna(row["throughput_base"]) and pd.isna(row["status_base"]):
            return "new"
        if pd.isna(row["throughput_new"]) and pd.isna(row["status_new"]):
            return "missing"
        if row["status_new"] != "ok":
            return f"new run {row['status_new']}"
        if row["status_base"] != "ok":
            return "no baseline"
        if row["change_pct"] < -tolerance_pct:
            return "REGRESSION"
        if row["change_pct"] > tolerance_pct:
            return "improvement"
        return "same"

    merged["verdict"] = merged.apply(verdict, axis=1)
    return merged.sort_values(JOIN_COLUMNS).reset_index(drop=True)


def load_references(path: Path) -> list[dict[str, Any]]:
    """References: a YAML list of {model, system, mode, data, batch_size, ..., throughput,
    lower, upper}; lower/upper are fractions (-0.05 = 5% below is still fine), null = no bound."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of references")
    for i, ref in enumerate(data):
        if "throughput" not in ref:
            raise ValueError(f"{path}: reference {i + 1} has no throughput")
    return data


def check_references(new: pd.DataFrame, references: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for ref in references:
        keys = {k: ref[k] for k in KEY_COLUMNS if k in ref}
        match = new
        for key, value in keys.items():
            match = match[match[key].astype(str) == str(value)]
        reference = float(ref["throughput"])
        lower, upper = ref.get("lower", -0.05), ref.get("upper")
        measured = float(match["throughput"].iloc[0]) if len(match) else math.nan
        deviation = measured / reference - 1 if reference else math.nan
        if math.isnan(measured):
            verdict = "missing"
        elif lower is not None and deviation < lower:
            verdict = "BELOW REFERENCE"
        elif upper is not None and deviation > upper:
            verdict = "ABOVE REFERENCE"
        else:
            verdict = "within"
        rows.append(
            {
                **keys,
                "reference": reference,
                "measured": measured,
                "deviation_pct": deviation * 100,
                "lower_pct": _pct(lower),
                "upper_pct": _pct(upper),
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)


def _pct(bound: float | None) -> float | None:
    return None if bound is None else bound * 100
