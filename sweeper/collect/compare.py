"""Comparing sweeps: per-configuration change against a baseline sweep, or a check against
reference figures with tolerances (as ReFrame checks performance references)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sweeper.collect import CompareError
from sweeper.collect.report import (
    GROUP_COLUMNS,
    KEY_COLUMNS,
    flag_columns,
    load_results,
    results_frame,
)
from sweeper.result.model import EXTRA_PREFIXES, FLAG_PREFIX

JOIN_COLUMNS = KEY_COLUMNS  # a configuration's identity, as in every table


# The keys of a configuration that are text even when they look like numbers (precision
# 16.32 is not a float); batch_size and instances are integers.
TEXT_KEYS = GROUP_COLUMNS
# What a reference may hold besides the keys of a configuration.
REFERENCE_FIELDS = ("throughput", "lower", "upper")
DEFAULT_LOWER, DEFAULT_UPPER = -0.05, None
FAILING_VERDICTS = ("REGRESSION", "missing")


def load_table(source: Path) -> pd.DataFrame:
    """A results table from a results.csv file or from sweep directories' result.json files."""
    if source.is_file():
        frame = pd.read_csv(source, dtype={key: str for key in [*TEXT_KEYS, "status"]})
    elif source.is_dir():
        frame = results_frame(load_results([source]))
        if frame.empty:
            raise CompareError(f"{source}: no result.json in this directory")
    else:
        raise CompareError(f"{source}: no such file or directory")
    for col in ("batch_size", "instances"):
        frame[col] = frame[col].astype("Int64")
    for col in TEXT_KEYS:
        if col in frame:
            frame[col] = frame[col].astype(str).where(frame[col].notna(), None)
    return frame


def _join_columns(base: pd.DataFrame, new: pd.DataFrame) -> list[str]:
    """The keys both tables know: results written before a key existed (e.g. `workload`)
    are still compared on the others."""
    return [c for c in JOIN_COLUMNS if _known(base, c) and _known(new, c)]


def _known(frame: pd.DataFrame, column: str) -> bool:
    return column in frame and bool(frame[column].notna().any())


def compare(base: pd.DataFrame, new: pd.DataFrame, tolerance_pct: float) -> pd.DataFrame:
    """One row per configuration in both: base and new throughput, change in %, verdict."""
    # Flags set from the command line tell configurations apart too (absent: "").
    flags = sorted(set(flag_columns(base)) | set(flag_columns(new)))
    base, new = (_with_columns(frame, flags) for frame in (base, new))
    on = [*_join_columns(base, new), *flags]
    figures = ["throughput", "throughput_ci95_low", "throughput_ci95_high", "unstable"]
    base, new = (_with_figures(frame) for frame in (base, new))
    keep = [*on, "status", *figures]
    merged = base[keep].merge(new[keep], on=on, how="outer", suffixes=("_base", "_new"))
    merged["change_pct"] = (merged["throughput_new"] / merged["throughput_base"] - 1) * 100
    merged["noise_pct"] = merged.apply(_noise_pct, axis=1)

    def verdict(row: pd.Series) -> str:
        if pd.isna(row["throughput_base"]) and pd.isna(row["status_base"]):
            return "new"
        if pd.isna(row["throughput_new"]) and pd.isna(row["status_new"]):
            return "missing"
        if row["status_new"] != "ok":
            return f"FAILED ({row['status_new']})"
        if row["status_base"] != "ok":
            return "no baseline"
        if abs(row["change_pct"]) <= tolerance_pct:
            return "same"
        # Beyond the tolerance, a change still has to stand out of both figures' noise.
        if pd.notna(row["noise_pct"]) and abs(row["change_pct"]) <= row["noise_pct"]:
            return "within noise"
        return "REGRESSION" if row["change_pct"] < 0 else "improvement"

    def caveat(row: pd.Series) -> str:
        shaky = [side for side in ("base", "new") if row[f"unstable_{side}"] is True]
        return f" (unstable {' and '.join(shaky)})" if shaky else ""

    merged["verdict"] = merged.apply(lambda row: verdict(row) + caveat(row), axis=1)
    return merged.sort_values(on).reset_index(drop=True)


def _noise_pct(row: pd.Series) -> float:
    """How far apart the two means may be by chance, in % of the base: the 95% half-width
    of their difference (the two intervals' half-widths combined); NaN without intervals."""
    halves = [
        (row[f"throughput_ci95_high_{side}"] - row[f"throughput_ci95_low_{side}"]) / 2
        for side in ("base", "new")
    ]
    if any(pd.isna(h) for h in halves) or not row["throughput_base"]:
        return float("nan")
    return float((halves[0] ** 2 + halves[1] ** 2) ** 0.5 / row["throughput_base"] * 100)


def _with_figures(frame: pd.DataFrame) -> pd.DataFrame:
    """Tables written before intervals were: the columns, empty."""
    frame = frame.copy()
    for col in ("throughput_ci95_low", "throughput_ci95_high"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce") if col in frame else float("nan")
    unstable = frame.get("unstable", False)
    frame["unstable"] = pd.Series(unstable, index=frame.index).astype(str).isin(["True", "true"])
    return frame


def _with_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    frame = frame.copy()
    for col in columns:
        frame[col] = frame[col].astype(str) if col in frame else ""
    return frame


def load_references(path: Path) -> list[dict[str, Any]]:
    """References: a YAML list of {model, system, mode, data, batch_size, instances,
    precision (any of these), throughput, lower, upper}; lower/upper are fractions of the
    reference (lower -0.05 = 5% below is still fine; upper null = no upper bound), by
    default -0.05 and null."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CompareError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise CompareError(f"{path}: not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, list) or not all(isinstance(ref, dict) for ref in data):
        raise CompareError(f"{path}: expected a list of references (- {{model: ..., ...}})")
    for i, ref in enumerate(data, start=1):
        unknown = sorted(
            k
            for k in set(ref) - set(KEY_COLUMNS) - set(REFERENCE_FIELDS)
            if not str(k).startswith(EXTRA_PREFIXES)
        )
        if unknown:
            raise CompareError(
                f"{path}: reference {i}: unknown key(s) {', '.join(map(str, unknown))}; "
                f"a reference has {', '.join([*KEY_COLUMNS, *REFERENCE_FIELDS])} and "
                f"{FLAG_PREFIX}<name> for a flag set from the command line"
            )
        if not isinstance(ref.get("throughput"), int | float):
            raise CompareError(f"{path}: reference {i} has no numeric throughput")
    return data


def check_references(new: pd.DataFrame, references: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    columns = [*KEY_COLUMNS, *flag_columns(new)]
    for number, ref in enumerate(references, start=1):
        keys = {k: ref[k] for k in ref if k in KEY_COLUMNS or str(k).startswith(EXTRA_PREFIXES)}
        match = new
        for key, value in keys.items():
            if key not in match:
                match = match.iloc[0:0]  # a flag no run of this sweep set
                break
            match = match[match[key].astype(str) == str(value)]
        if len(match) > 1:
            differ = [k for k in columns if k not in keys and k in match and match[k].nunique() > 1]
            raise CompareError(
                f"reference {number} ({_describe(keys)}) matches {len(match)} rows: give "
                f"{' and '.join(differ) or 'the keys that tell them apart'} to choose one"
            )
        reference = float(ref["throughput"])
        lower, upper = ref.get("lower", DEFAULT_LOWER), ref.get("upper", DEFAULT_UPPER)
        status = str(match["status"].iloc[0]) if len(match) else None
        measured = float(match["throughput"].iloc[0]) if status == "ok" else math.nan
        deviation = measured / reference - 1 if reference else math.nan
        if status is None:
            verdict = "missing"
        elif status != "ok":
            verdict = f"FAILED ({status})"
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


def _describe(keys: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in keys.items()) or "no keys"


def is_failing(verdict: str) -> bool:
    """A verdict that fails a check: a regression, a run that did not succeed, a missing row,
    a figure outside its reference's bounds."""
    return verdict.startswith((*FAILING_VERDICTS, "FAILED")) or verdict.endswith("REFERENCE")


def _pct(bound: float | None) -> float | None:
    return None if bound is None else bound * 100
