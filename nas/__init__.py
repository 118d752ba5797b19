"""`edgekit.nas`: architecture search under a board's SRAM and flash budgets.

- `family`: the interface the driver uses (`Family`, `get_family`): one per search space;
- `mcunet`: the search space (`MCUNetSpec`, `sample`, `mobilenet_v2_spec`, `to_torch`),
  `mcunet_family` its `Family`;
- `mcuformer`: vision transformers with low-rank MLPs (`MCUFormerSpec`, `sample`, the family),
  `mcuformer_torch` the model and training, `mcuformer_ir` its IR built from the weights and
  its memory per trial;
- `torch_model`: the float PyTorch model of a spec; `convert`: its int8 IR and ``.tflite``;
- `graph`: the int8 IR of a spec built directly (`graph_from_spec`), for memory planning;
- `memory`: the planner's arena, the firmware's, and the fast evaluator `peak_sram_fast`;
- `codesize`: flash from constants plus a code-size model fitted on real builds;
- `datasets`, `train`: data that needs no download, the training proxy and final accuracy;
- `search`: the Optuna driver behind ``edgekit search``.
"""
