"""Compare the int8 MatMul codings on this CPU: fidelity to the fp32 export and speed.

    .venv/bin/jobtitles export --fp32 --out /tmp/fp32-bundle          # the unquantized reference
    .venv/bin/python bench/quant_schemes.py --fp32-bundle /tmp/fp32-bundle [--runs 3]

For each coding (see ``jobtitles.export.quantize.MatMulScheme``) the fp32 bundle's graph is
quantized as the export does it, then scored on the head's held-out titles and non-titles:
top-1 level / area agreement with the fp32 bundle (all titles, and titles the fp32 model decides
by a margin of at least 0.1), agreement of the title decision, and titles/s (median of
``--runs``). Which coding is exact depends on the CPU: without VNNI, onnxruntime's uint8 × int8
kernel saturates (README, Quantization).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from jobtitles.bundle import Bundle
from jobtitles.classifier import Classifier
from jobtitles.export.bundle_builder import top1_agreement, calibration_batches, calibration_titles
from jobtitles.export.quantize import MatMulScheme, quantize_model

REPO = Path(__file__).resolve().parents[1]
SCHEMES = {
    "u8u8 (shipped)": MatMulScheme(),
    "u8s8": MatMulScheme(weight_zero_point=0),
    "u8s8, 7-bit activations": MatMulScheme(act_levels=63, act_zero_point=64, weight_zero_point=0),
    "u8s8, 7-bit weights": MatMulScheme(weight_levels=63, weight_zero_point=0),
    "s8s8": MatMulScheme(act_zero_point=0, weight_zero_point=0),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fp32-bundle", required=True, type=Path)
    ap.add_argument("--head", type=Path, default=REPO / "models" / "heads" / "default")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    report = json.loads((args.head / "training_report.json").read_text(encoding="utf-8"))
    titles, non_titles = report["heldout_titles"], report["heldout_non_titles"]
    texts, n = titles + non_titles, len(titles)
    ref_bundle = Bundle.load(args.fp32_bundle)
    ref = Classifier(ref_bundle).probabilities(texts)
    calibration = calibration_batches(ref_bundle.tokenizer_path, ref_bundle.query_prefix,
                                      calibration_titles(set(texts)))
    speed_texts = (titles * 2)[:1500]
    print(f"{len(titles)} held-out titles, {len(non_titles)} non-titles; agreement with the fp32 bundle "
          "(all / decided by >= 0.1)")
    print("| coding | level top-1 | area top-1 | title decision | titles/s |")
    print("| --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for name, scheme in SCHEMES.items():
            out = Path(tmp) / "bundle"
            if out.exists():
                shutil.rmtree(out)
            shutil.copytree(args.fp32_bundle, out, ignore=shutil.ignore_patterns("model.onnx"))  # written below
            quantize_model(args.fp32_bundle / "model.onnx", out / "model.onnx", calibration, scheme=scheme)
            bundle = Bundle.load(out)
            clf = Classifier(bundle)
            got = clf.probabilities(texts)
            lv = top1_agreement(got.level[:n], ref.level[:n])
            ar = top1_agreement(got.area[:n], ref.area[:n])
            thr = bundle.title_threshold
            ti = float(((got.title >= thr) == (ref.title >= thr)).mean())
            clf.probabilities(speed_texts[:200])
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                clf.probabilities(speed_texts)
                times.append(time.perf_counter() - t0)
            print(f"| {name} | {lv[0]:.4f} / {lv[1]:.4f} | {ar[0]:.4f} / {ar[1]:.4f} | {ti:.4f} | "
                  f"{len(speed_texts) / np.median(times):.0f} |", flush=True)


if __name__ == "__main__":
    main()
