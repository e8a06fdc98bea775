"""``journeys hl7 convert FILE...`` / ``journeys hl7 listen``: HL7 v2 messages as contract-v1 events.

``convert`` prints the events of every message of the files as JSON lines (reasons on
stderr, exit 1 if any message was rejected); ``listen`` is an MLLP server that answers
``AA`` only once Kafka has acknowledged the message's events and the message itself (raw
topic ``JOURNEYS_TOPIC_RAW_HL7``), ``AE`` with the reason when it maps to nothing valid,
``AR`` when Kafka did not take it. ``--config`` names a source mapping (``sources/README.md``)::

    $ journeys hl7 listen --port 2575 --bootstrap kafka:9092 --config hl7-north.yaml
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

KINDS_HELP = {
    "hl7": ("HL7 v2 (SIU, ADT)", "MLLP"),
    "fhir": ("FHIR R4 (Appointment, Encounter, Bundles)", "HTTP"),
}


def register_source(subparsers: Any, kind: str, server_action: str, default_port: int) -> None:
    """``journeys KIND convert`` and ``journeys KIND SERVER_ACTION`` for one built-in source
    (``journeys fhir`` is built here too: one parser, one way to report a fault)."""
    what, protocol = KINDS_HELP[kind]
    parser = subparsers.add_parser(kind, help=f"{what} messages as contract events: convert files, or receive over {protocol}",
                                   description=sys.modules[f"cli.commands.{kind}"].__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    convert = actions.add_parser("convert", help="print the contract events of message files as JSON lines")
    convert.add_argument("files", nargs="+", metavar="FILE")
    convert.add_argument("--config", help="source mapping (YAML); default: the built-in mapping")
    convert.set_defaults(run=_convert, kind=kind)
    server = actions.add_parser(server_action, help=f"receive over {protocol}, publish to Kafka, then acknowledge")
    server.add_argument("--port", type=int, default=default_port, help=f"default {default_port}; 0: any free port")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    server.add_argument("--bootstrap", default=None, help="HOST:PORT[,...] (default: JOURNEYS_BOOTSTRAP)")
    server.add_argument("--config", help="source mapping (YAML); default: the built-in mapping")
    server.set_defaults(run=_serve, kind=kind)


def register(subparsers: Any) -> None:
    register_source(subparsers, "hl7", "listen", 2575)


def _fail(args: argparse.Namespace, message: str) -> int:
    print(f"journeys {args.kind} {args.action}: {message}", file=sys.stderr)
    return 2


def _load_source(args: argparse.Namespace) -> Any:
    """The source, or the one line that says why its configuration is unusable (then ``None``)."""
    import yaml

    from sources import load_source

    try:
        return load_source(args.kind, args.config)
    except OSError as error:
        _fail(args, f"cannot read --config {args.config}: {error.strerror or error}")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        _fail(args, f"--config {args.config} is not YAML{where}: {getattr(error, 'problem', None) or error}")
    except ValueError as error:
        _fail(args, f"--config {args.config}: {error}")
    return None


def _convert(args: argparse.Namespace) -> int:
    from sources.convert import convert_files

    source = _load_source(args)
    if source is None:
        return 2
    try:
        return convert_files(source, args.files)
    except OSError as error:
        return _fail(args, f"cannot read {error.filename}: {error.strerror or error}")


def _serve(args: argparse.Namespace) -> int:
    from runtime.config import load_settings
    from runtime.logs import configure_logging
    from streams.gateway import GatewayError, run_gateway

    settings = load_settings(bootstrap=args.bootstrap)
    source = _load_source(args)
    if source is None:
        return 2
    configure_logging(settings.log_format, settings.log_level)
    try:
        run_gateway(args.kind, settings, source, args.host, args.port)
    except GatewayError as error:
        return _fail(args, str(error))
    return 0
