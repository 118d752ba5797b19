"""`edgekit.nas`: the MCUNet-style architecture search under a board's SRAM and flash budgets.

- `mcunet`: the search space (`MCUNetSpec`, `sample`, `mobilenet_v2_spec`, `to_torch`);
- `torch_model`: the float PyTorch model of a spec; `convert`: its int8 IR and ``.tflite``;
- `graph`: the int8 IR of a spec built directly (`graph_from_spec`), for memory planning;
- `memory`: the planner's arena, the firmware's, and the fast evaluator `peak_sram_fast`;
- `codesize`: flash from constants plus a code-size model fitted on real builds;
- `datasets`, `train`: data that needs no download, the training proxy and final accuracy;
- `search`: the Optuna driver behind ``edgekit search``.
"""
