"""``--allow-tflm-incompatible``: the one switch between refusing and warning about a model
TFLite Micro's Prepare would refuse (`edgekit.converters.tflite_validate`)."""

from __future__ import annotations

import argparse
import sys

from edgekit.converters.tflite_validate import tflm_findings
from edgekit.errors import TflmIncompatibleError
from edgekit.ir import Graph


def add_tflm_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-tflm-incompatible", action="store_true",
                        help="go on (with a warning) with a model whose quantization TFLite"
                        " Micro's Prepare would refuse or cannot represent; default: an error")


def check_tflm_compatible(graph: Graph, args: argparse.Namespace, source: str = "") -> list[str]:
    """Refuse `graph` when TFLite Micro would not run it as written, or, with
    ``--allow-tflm-incompatible``, print one warning per problem; returns the problems."""
    findings = tflm_findings(graph)
    if not findings:
        return []
    where = source or graph.name
    if not getattr(args, "allow_tflm_incompatible", False):
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        raise TflmIncompatibleError(
            f"{where}: TFLite Micro would not run this model as written: {findings[0]}{more};"
            " give --allow-tflm-incompatible to go on anyway", findings)
    for finding in findings:
        print(f"edgekit {getattr(args, 'command', '')}: warning: {where}: not TFLite Micro"
              f" compatible: {finding}", file=sys.stderr)
    return findings
