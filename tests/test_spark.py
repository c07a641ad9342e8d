"""Spark: classify a DataFrame in PySpark local mode and match the in-process runtime."""

import shutil

import pytest

pytest.importorskip("pyspark")
pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def spark():
    if not shutil.which("java"):
        pytest.skip("no Java runtime for PySpark")
    import os
    import sys

    from pyspark.sql import SparkSession

    # executors must run a Python that has jobtitles installed (on a cluster: the nodes' env)
    os.environ["PYSPARK_PYTHON"] = sys.executable

    session = (SparkSession.builder.master("local[2]").appName("jobtitles-test")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "2")
               .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
               .getOrCreate())
    yield session
    session.stop()


@pytest.mark.parametrize("ship", [False, True])
def test_dataframe_matches_the_runtime(spark, bundle_dir, classifier, ship):
    from jobtitles.spark import classify_dataframe

    titles = ["Senior Data Engineer", "Praktikant (m/w/d) Marketing", "Apply now", None, "店长", "Registered Nurse"]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(titles)], "id INT, title STRING").repartition(2)
    rows = sorted(classify_dataframe(df, "title", bundle_dir, ship=ship).collect(), key=lambda r: r.id)
    assert len(rows) == len(titles)
    expected = classifier.predict(titles)
    for row, p in zip(rows, expected):
        assert (row.jt_valid, row.jt_level, row.jt_area) == (p.valid, p.level, p.area)
        if p.valid:
            assert abs(row.jt_level_score - p.level_score) < 1e-3
        else:
            assert row.jt_reason
