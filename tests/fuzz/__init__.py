"""The fuzz suite of the CLI (test_fuzz_cli.py): seeds.py builds well-formed files, mutators.py
and model_mutators.py damage them, cases.py turns a (seed, index) into files and commands,
harness.py runs and classifies them; bench/fuzz_cli.py runs the long version or replays a case."""
