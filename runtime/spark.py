"""Classify a Spark DataFrame column with ``mapInPandas`` (Arrow batches), torch-free.

    from jobtitles.spark import classify_dataframe
    out = classify_dataframe(df, title_col="title", bundle="/mnt/models/jobtitles")

The bundle is loaded once per executor process (a small per-process cache keyed by
path) and reached either by a path visible to every executor (shared storage) or
through ``SparkContext.addFile`` / ``SparkFiles`` (``ship=True``, which adds the
bundle folder from the driver). Output: the input columns plus ``jt_valid``,
``jt_level``, ``jt_level_score``, ``jt_area``, ``jt_area_score``, ``jt_title_score``, ``jt_reason``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

OUTPUT_COLUMNS = {
    "jt_valid": "boolean",
    "jt_level": "string",
    "jt_level_score": "double",
    "jt_area": "string",
    "jt_area_score": "double",
    "jt_title_score": "double",
    "jt_reason": "string",
}


@functools.lru_cache(maxsize=4)
def _classifier(path: str, batch_size: int, threads: int):
    """One Classifier per bundle path (and settings) and executor process."""
    from jobtitles.classifier import Classifier

    return Classifier.load(path, batch_size=batch_size, threads=threads)


def _resolve(bundle: str, shipped: bool) -> str:
    if not shipped:
        return bundle
    from pyspark import SparkFiles

    return SparkFiles.get(Path(bundle).name)


def classify_dataframe(df, title_col: str = "title", bundle: str | os.PathLike | None = None, ship: bool = False,
                       batch_size: int = 64, threads: int = 1):
    """Return ``df`` with the classification columns added (one output row per input row).

    ``threads``: batches each task runs at once, one core each. Spark already runs one task per
    core (``spark.task.cpus`` = 1), so the default is 1; with ``spark.task.cpus`` = N, pass N."""
    from pyspark.sql.types import StructField, StructType

    from jobtitles.bundle import Bundle

    path = str(Bundle.load(bundle).path)  # fail on the driver, with a clear message, if it is unusable
    if ship:
        df.sparkSession.sparkContext.addFile(path, recursive=True)
    schema = StructType(df.schema.fields + [StructField(name, _spark_type(t), True)
                                            for name, t in OUTPUT_COLUMNS.items()])

    def run(batches: Iterator) -> Iterator:
        clf = _classifier(_resolve(path, ship), batch_size, max(1, threads))
        for pdf in batches:
            # nulls arrive as None or NaN depending on the pandas version: both mean "no title"
            preds = clf.predict([t if isinstance(t, str) else None for t in pdf[title_col].tolist()])
            out = pdf.copy()
            out["jt_valid"] = [p.valid for p in preds]
            out["jt_level"] = [p.level for p in preds]
            out["jt_level_score"] = [p.level_score for p in preds]
            out["jt_area"] = [p.area for p in preds]
            out["jt_area_score"] = [p.area_score for p in preds]
            out["jt_title_score"] = [p.title_score for p in preds]
            out["jt_reason"] = [p.reason for p in preds]
            yield out

    return df.mapInPandas(run, schema=schema)


def _spark_type(name: str):
    from pyspark.sql.types import BooleanType, DoubleType, StringType

    return {"boolean": BooleanType(), "double": DoubleType(), "string": StringType()}[name]
