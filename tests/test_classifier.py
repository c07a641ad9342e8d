"""The runtime classifier on the default bundle: sensible answers, order, invalid inputs, batch invariance."""

import json

import numpy as np
import pytest


@pytest.mark.parametrize("title, level, area", [
    ("Senior Data Engineer", "Sr Specialist", "IT"),
    ("Registered Nurse", "Specialist", "Healthcare"),
    ("Chief Financial Officer", "C-Level", "Finance"),
    ("Marketing Intern", "Student", "Marketing"),
    ("Warehouse Picker", "Assistant", "Operations"),
    ("Head of Human Resources", "Director", "Human Resources"),
    ("Praktikant (m/w/d) Marketing", "Student", "Marketing"),
    ("Vice President of Sales", "VP", "Marketing"),
])
def test_clear_titles_get_the_obvious_labels(classifier, title, level, area):
    p = classifier.predict([title])[0]
    assert p.valid
    assert (p.level, p.area) == (level, area), p


def test_one_prediction_per_input_in_order_with_reasons(classifier):
    long_title = "Senior Software Engineer " * 4000
    inputs = ["Software Engineer", "", "2021-30665", None, "Apply now", "Cashier", long_title, 17]
    preds = classifier.predict(inputs)
    assert len(preds) == len(inputs)
    assert [p.valid for p in preds] == [True, False, False, False, False, True, True, False]
    for p in preds:
        assert p.valid or (p.reason and p.level is None and p.area is None and p.areas == [])
    assert preds[0].title == "Software Engineer" and preds[5].title == "Cashier"


def test_scores_are_probabilities_and_top_k_is_sorted(classifier):
    p = classifier.predict(["Accountant"])[0]
    assert 0 < p.level_score <= 1 and 0 < p.area_score <= 1
    scores = [s for _, s in p.areas]
    assert scores == sorted(scores, reverse=True) and p.areas[0] == (p.area, p.area_score)
    assert len(p.areas) == 3
    lv, ar, ti = classifier.probabilities(["Accountant"])
    assert np.isclose(lv.sum(), 1, atol=1e-4) and np.isclose(ar.sum(), 1, atol=1e-4)
    assert 0 <= ti[0] <= 1 and p.title_score == round(float(ti[0]), 4)


def test_a_title_gets_the_same_answer_alone_and_inside_any_batch(classifier):
    titles = ["Nurse", "Senior Vice President, Global Supply Chain Operations EMEA", "店长", "Data Analyst III",
              "Praktikant Marketing", "Forklift Driver - Nights"]
    alone = [classifier.probabilities([t]) for t in titles]
    together = classifier.probabilities(titles)
    reversed_ = classifier.probabilities(titles[::-1])
    for k in range(3):  # level, area, title (quantization scales are per row, never per batch)
        single = np.concatenate([a[k] for a in alone])
        assert np.allclose(single, together[k], atol=2e-3)
        assert np.allclose(together[k], reversed_[k][::-1], atol=2e-3)
    assert (np.vstack([a.level for a in alone]).argmax(1) == together.level.argmax(1)).all()


# none of these is caught by the cleaning rules: the model's title head has to see them
@pytest.mark.parametrize("text", ["Sign up for job alerts", "Competitive salary + benefits", "Meet the team",
                                  "Join our talent community", "Jetzt bewerben und Teil unseres Teams werden"])
def test_the_model_flags_non_titles_with_a_reason(classifier, text):
    p = classifier.predict([text])[0]
    assert not p.valid and p.level is None and p.area is None
    assert p.reason.startswith("not a job title") and p.title_score < classifier.title_threshold


def test_title_threshold_zero_turns_the_detector_off(bundle_dir):
    from jobtitles.classifier import Classifier

    p = Classifier.load(bundle_dir, title_threshold=0.0).predict(["Sign up for job alerts"])[0]
    assert p.valid and p.level and p.title_score is not None


def test_labels_come_from_the_bundle(classifier, bundle_dir):
    labels = json.loads((bundle_dir / "labels.json").read_text())
    assert classifier.levels == labels["levels"] and classifier.areas == labels["areas"]


def test_cache_returns_the_same_answers_and_stays_bounded(bundle_dir):
    from jobtitles.classifier import Classifier

    clf = Classifier.load(bundle_dir, cache_size=3)
    titles = ["Nurse", "Welder", "Nurse", "Cook", "Teacher", "Nurse"]
    first = clf.predict(titles)
    assert len(clf._cache) <= 3
    uncached = Classifier.load(bundle_dir, cache_size=0).predict(titles)
    assert [(p.level, p.area, p.level_score) for p in first] == [(p.level, p.area, p.level_score) for p in uncached]


def test_the_session_s_optimization_level_gives_the_same_outputs_as_all_optimizations(bundle_dir):
    """The session skips ORT_ENABLE_ALL's layout passes for a faster cold start: this proves they change nothing."""
    from jobtitles.bundle import Bundle, load_tokenizer
    from jobtitles.classifier import OnnxSession, encode_batch

    bundle = Bundle.load(bundle_dir)
    tok = load_tokenizer(bundle.tokenizer_path)
    titles = ["Senior Data Engineer", "Kat Görevlisi (Otel)", "店长", "Praktikant (m/w/d) Marketing", "Apply now"] * 3
    ids, mask = encode_batch(tok, titles, bundle.query_prefix, 1)
    used = OnnxSession(bundle.model_path).run(ids, mask)
    full = OnnxSession(bundle.model_path, optimization="ORT_ENABLE_ALL").run(ids, mask)
    for a, b in zip(used, full):
        np.testing.assert_array_equal(a, b)


def test_batch_spans_cover_every_position_once_in_order_and_give_every_core_work():
    from jobtitles.classifier import MIN_PARALLEL_BATCH, batch_spans

    order = np.arange(100)[::-1]
    assert MIN_PARALLEL_BATCH == 4  # the cases below are written for it
    for n, size, threads, want in [(100, 32, 2, [32, 32, 32, 4]), (40, 32, 2, [20, 20]), (40, 32, 1, [32, 8]),
                                   (10, 32, 4, [4, 4, 2]), (6, 32, 2, [4, 2]), (3, 32, 2, [3]), (1, 32, 2, [1]),
                                   (0, 32, 2, [])]:
        spans = batch_spans(order[:n], size, threads)
        assert [len(s) for s in spans] == want
        assert np.array_equal(np.concatenate(spans) if spans else order[:0], order[:n])


def test_batches_run_at_once_give_exactly_the_answers_of_one_batch_at_a_time(bundle_dir):
    """The same batches (8 titles each) run on one core or spread over three: identical outputs, in input order."""
    from pathlib import Path

    from jobtitles.classifier import Classifier

    dev = Path(__file__).parent / "data" / "dev_multilingual.jsonl"
    titles = [json.loads(line)["title"] for line in dev.read_text(encoding="utf-8").splitlines()][:61]
    serial = Classifier.load(bundle_dir, threads=1, batch_size=8, cache_size=0)
    parallel = Classifier.load(bundle_dir, threads=3, batch_size=8, cache_size=0)
    a, b = serial.probabilities(titles), parallel.probabilities(titles)
    assert serial._pool is None and parallel._pool is not None
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert [p.to_dict() for p in serial.predict(titles)] == [p.to_dict() for p in parallel.predict(titles)]


def test_available_cpus_follows_a_container_s_cpu_quota(tmp_path):
    from jobtitles.classifier import available_cpus, cgroup_cpu_quota

    uncapped = available_cpus(tmp_path / "none")
    assert uncapped >= 1 and cgroup_cpu_quota(tmp_path / "none") is None
    v2, v1 = tmp_path / "v2", tmp_path / "v1"
    v2.mkdir()
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    for quota, want in [(None, uncapped), (100000, 1), (150000, min(2, uncapped)), (50000, 1)]:
        (v2 / "cpu.max").write_text(f"{quota or 'max'} 100000\n")
        (v1 / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota or -1}\n")
        assert available_cpus(v2) == want and available_cpus(v1) == want
    assert cgroup_cpu_quota(v2) == 0.5 and cgroup_cpu_quota(v1) == 0.5
    (v2 / "cpu.max").write_text("garbage\n")
    assert available_cpus(v2) == uncapped


def _classify_in_child(clf, titles, queue):
    queue.put([p.level for p in clf.predict(titles)])


def test_a_classifier_used_before_fork_still_runs_batches_at_once_in_the_child(bundle_dir):
    """Threads do not survive fork (gunicorn --preload, multiprocessing): the child must not wait on dead workers."""
    import multiprocessing

    from jobtitles.classifier import Classifier

    clf = Classifier.load(bundle_dir, threads=2, batch_size=8, cache_size=0)
    titles = ["Nurse", "Welder", "Data Engineer", "Cook", "Teacher", "Store Manager"] * 4
    want = [p.level for p in clf.predict(titles)]  # starts the worker threads in the parent
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_classify_in_child, args=(clf, titles, queue))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0, "the child hung or failed"
    assert queue.get(timeout=5) == want
