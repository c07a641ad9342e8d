"""The title memory: the ONNX vote equals its numpy reference (ties included), answers never depend on the
batch, a remembered title votes for its own area, and the memory file round-trips."""

import json
from dataclasses import replace

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from jobtitles.export.title_memory import MEMORY_AREA_INPUT, attach_memory, set_output_temperature  # noqa: E402
from jobtitles.train.data import Example  # noqa: E402
from jobtitles.train.memory import MEMORY_FILE, MemorySettings, MemoryTitles, TitleMemory  # noqa: E402

DIM, AREAS = 32, 5


def _graph(memory: TitleMemory):
    """x [b, DIM] -> embedding = x / |x|, area_probs = softmax(x[:, :AREAS]), with the memory attached."""
    nodes = [helper.make_node("ReduceL2", ["x"], ["norm"], axes=[1], keepdims=1),
             helper.make_node("Div", ["x", "norm"], ["embedding"]),
             helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["xs"]),
             helper.make_node("Softmax", ["xs"], ["area_probs"], axis=-1)]
    inits = [numpy_helper.from_array(np.array([v], dtype=np.int64), n)
             for n, v in (("s0", 0), ("s1", AREAS), ("ax", 1))]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", DIM])],
                              [helper.make_tensor_value_info("area_probs", TensorProto.FLOAT, ["b", AREAS]),
                               helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["b", DIM])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    attach_memory(model, memory)
    return model, ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _reference(memory: TitleMemory, x: np.ndarray) -> np.ndarray:
    emb = x / np.linalg.norm(x, axis=1, keepdims=True)
    head = np.exp(x[:, :AREAS] - x[:, :AREAS].max(1, keepdims=True))
    return memory.blend(head / head.sum(1, keepdims=True), emb)


def _memory(n=200, seed=0, settings=MemorySettings()):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, DIM)).astype(np.float32)
    return TitleMemory.build(emb / np.linalg.norm(emb, axis=1, keepdims=True), rng.integers(0, AREAS, n), AREAS,
                             settings), rng


def test_the_graph_votes_exactly_as_the_numpy_reference_ties_included():
    memory, rng = _memory()
    model, session = _graph(memory)
    x = rng.normal(size=(64, DIM)).astype(np.float32)
    x[:8] = np.where(x[:8] > 0, 1.0, -1.0)  # sign-only queries: many neighbours at equal similarity
    got = session.run(["area_probs"], {"x": x})[0]
    np.testing.assert_allclose(got, _reference(memory, x), atol=1e-6)
    assert np.allclose(got.sum(1), 1.0, atol=1e-5)
    # a sharpening temperature changes the scores, never the answers
    set_output_temperature(model, 0.5)
    sharp = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["area_probs"], {"x": x})[0]
    np.testing.assert_allclose(sharp, _reference(replace(memory, output_temperature=0.5), x), atol=1e-6)
    assert np.array_equal(sharp.argmax(1), got.argmax(1)) and (sharp.max(1) >= got.max(1) - 1e-6).all()


def test_an_answer_is_the_same_alone_and_in_any_batch():
    memory, rng = _memory(seed=1)
    _, session = _graph(memory)
    x = rng.normal(size=(16, DIM)).astype(np.float32)
    together = session.run(["area_probs"], {"x": x})[0]
    for i in range(len(x)):
        alone = session.run(["area_probs"], {"x": x[i:i + 1]})[0][0]
        # the neighbours are the same (integer similarities); only vectorised float rounding may differ
        np.testing.assert_allclose(alone, together[i], rtol=0, atol=1e-6)
        assert alone.argmax() == together[i].argmax()


def test_a_remembered_title_votes_for_its_own_area():
    memory, rng = _memory(seed=2, settings=MemorySettings(k=3, weight=0.9, temperature=0.01))
    _, session = _graph(memory)
    x = memory.signs()[:20] + 1e-3  # the memory's own sign patterns (centre ~ 0 for random data)
    x += memory.centre
    got = session.run(["area_probs"], {"x": x})[0]
    assert (got.argmax(1) == memory.labels[:20]).mean() >= 0.95


def test_the_head_output_is_kept_under_its_own_name_and_the_memory_is_stored_packed():
    memory, _ = _memory(n=1000)
    model, _ = _graph(memory)
    outputs = {n for node in model.graph.node for n in node.output}
    assert MEMORY_AREA_INPUT in outputs
    codes = next(i for i in model.graph.initializer if i.name == "memory/codes")
    assert numpy_helper.to_array(codes).nbytes == 1000 * DIM // 8
    with pytest.raises(ValueError, match="already"):
        attach_memory(model, memory)


def test_memory_building_rejects_what_it_cannot_vote_with():
    with pytest.raises(ValueError, match="multiple of 8"):
        TitleMemory.build(np.zeros((10, 12)), np.zeros(10, dtype=int), AREAS)
    with pytest.raises(ValueError, match="neighbours"):
        TitleMemory.build(np.zeros((3, 8)), np.zeros(3, dtype=int), AREAS)
    with pytest.raises(ValueError, match="area indices"):
        TitleMemory.build(np.zeros((10, 8)), np.full(10, AREAS), AREAS)


def test_the_memory_file_keeps_hand_labelled_titles_once_and_round_trips(tmp_path):
    examples = [Example("Nurse", "Specialist", "Healthcare", "postings_en_a"),
                Example("Nurse", "Specialist", "Education", "postings_en_b"),  # the first label of a text wins
                Example("Apply now", None, None, "nontitles_en", valid=False),
                Example("Welder", "Specialist", None, "postings_en_a"),  # no area: cannot vote
                Example("Software Engineer", "Specialist", "IT", "onet_alternate")]  # taxonomy: left out
    held_out = [Example("Staff Nurse", "Specialist", "Healthcare", "postings_en_a", alt_areas=("Education",)),
                Example("Engineer", "Specialist", "Engineering", "onet_alternate")]
    titles = MemoryTitles.from_examples(examples, {"postings_en_a", "postings_en_b", "nontitles_en"}, held_out,
                                        MemorySettings(k=7))
    assert titles.texts == ["Nurse"] and titles.areas == ["Healthcare"]
    assert titles.validation == [("Staff Nurse", ["Healthcare", "Education"])]
    first = titles.save(tmp_path).read_bytes()
    assert titles.save(tmp_path).read_bytes() == first  # same titles, same bytes (a stable bundle version)
    again = MemoryTitles.load(tmp_path)
    assert again == titles and again.settings.k == 7
    (tmp_path / MEMORY_FILE).unlink()
    assert MemoryTitles.load(tmp_path) is None


def test_titles_added_after_training_join_the_memory_once_and_are_recorded(tmp_path):
    from click.testing import CliRunner

    from jobtitles.cli import main

    titles = MemoryTitles(["Nurse"], ["Healthcare"], MemorySettings(), [("Staff Nurse", ["Healthcare"])])
    titles.save(tmp_path)
    new = tmp_path / "utilities.jsonl"
    new.write_text("\n".join(json.dumps(r) for r in [
        {"title": "Elektriker – Stadtwerke", "language": "de", "valid": True, "level": "Specialist",
         "area": "Energy & Utilities", "alt_areas": []},
        {"title": "Nurse", "language": "en", "valid": True, "level": "Specialist", "area": "Education"},  # known
        {"title": "Staff Nurse", "language": "en", "valid": True, "level": "Specialist", "area": "Healthcare"},
        {"title": "Jetzt bewerben", "language": "de", "valid": False, "level": None, "area": None},
    ]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["extend-memory", "--head", str(tmp_path), str(new)])
    assert result.exit_code == 0, result.output
    assert "1 titles added" in result.output
    grown = MemoryTitles.load(tmp_path)
    assert grown.texts == ["Nurse", "Elektriker - Stadtwerke"]  # cleaned as the training titles are
    assert grown.areas == ["Healthcare", "Energy & Utilities"]
    assert grown.validation == titles.validation  # the temperature is still fitted on the head's own titles
    assert [(a["file"], a["titles"]) for a in grown.added] == [("utilities.jsonl", 1)]
    again = CliRunner().invoke(main, ["extend-memory", "--head", str(tmp_path), str(new)])
    assert again.exit_code != 0 and "already in the memory" in again.output
    assert MemoryTitles.load(tmp_path) == grown
    bare = tmp_path / "bare"
    bare.mkdir()
    missing = CliRunner().invoke(main, ["extend-memory", "--head", str(bare), str(new)])
    assert missing.exit_code != 0 and "no memory.json.gz" in missing.output


def test_a_small_change_of_the_embedding_moves_the_similarities_a_little():
    """The input is quantised to 255 levels, not to its signs, so the int8 encoder's noise cannot flip
    whole signs: a perturbation of 1e-4 moves every similarity by far less than one flipped sign
    (2 / DIM)."""
    memory, rng = _memory(seed=3)
    x = rng.normal(size=(32, DIM)).astype(np.float32)
    emb = x / np.linalg.norm(x, axis=1, keepdims=True)
    noisy = emb + rng.normal(scale=1e-4, size=emb.shape).astype(np.float32)
    moved = np.abs(memory.similarities(noisy) - memory.similarities(emb)).max()
    assert moved < 0.25 * 2 / DIM
    assert np.abs(memory.similarities(emb)).max() <= 1.0 + 1e-6
