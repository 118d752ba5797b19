"""EmbBERT-Q at its paper's size: `edgekit.nas.embbert.PAPER_SPEC` trained on fortunes,
quantized and written as a model folder that `edgekit build DIR` takes (``model.tflite``,
``spec.json``, ``tokenizer.json``). Used by ``bench/embbert_paper.py`` and the emulated test
``hil_tests/test_embbert_paper_emulated.py``; the training is short on purpose (it is the
memory that is at stake, not the accuracy)."""

from __future__ import annotations

import time
from pathlib import Path


def paper_model(model_dir: Path, *, steps: int, batch_size: int = 32, seed: int = 0,
                threads: int = 2, data=None, test_limit: int | None = None) -> dict:
    """Train ``PAPER_SPEC`` for ``steps`` steps on ``data`` (default fortunes), quantize it
    on 64 training texts, write it to ``model_dir``; its figures (top-1 on the first
    ``test_limit`` texts of ``data.test``, all by default)."""
    from edgekit.converters.tflite_writer import save_tflite
    from edgekit.nas.datasets import Split
    from edgekit.nas.embbert import EMBBERT, PAPER_SPEC, EmbBERTSpec
    from edgekit.nas.text import load_fortunes

    data = load_fortunes() if data is None else data
    EMBBERT.space(data, None)
    spec = EmbBERTSpec(**PAPER_SPEC, num_classes=data.num_classes)
    test = Split(data.test.images[:test_limit], data.test.labels[:test_limit])
    start = time.perf_counter()
    model = EMBBERT.train(spec, data.train, steps=steps, batch_size=batch_size, seed=seed,
                          threads=threads)
    graph = EMBBERT.int8_graph(model, spec, EMBBERT.calibration(spec, data.train))
    model_dir.mkdir(parents=True, exist_ok=True)
    save_tflite(graph, model_dir / "model.tflite")
    (model_dir / "spec.json").write_text(spec.to_json() + "\n")
    for name, text in EMBBERT.artifacts(spec).items():
        (model_dir / name).write_text(text, encoding="utf-8")
    memory = EMBBERT.final_memory(spec, graph, None)
    return {"spec": spec.to_dict(), "train_steps": steps, "batch_size": batch_size,
            "train_quantize_seconds": round(time.perf_counter() - start, 1),
            "float_top1": EMBBERT.float_accuracy(model, spec, test),
            "int8_top1": EMBBERT.int8_accuracy(graph, spec, test),
            "test_texts": len(test), "weights_bytes": memory["weights_bytes"],
            "planned_peak_sram": memory["peak_sram"], "flash_estimate": memory["flash"],
            "planned_weights_plus_peak_sram": memory["total_bytes"]}
