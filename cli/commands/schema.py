"""``journeys schema export DIR``: write the contract's JSON Schema, one file per family.

    $ journeys schema export build/schemas
    build/schemas/scheduling.schema.json
    build/schemas/checkin.schema.json
    build/schemas/waits.schema.json
    build/schemas/telehealth.schema.json
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("schema", help="the wire contract as JSON Schema")
    actions = parser.add_subparsers(dest="schema_action", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write <family>.schema.json for every event family into DIR")
    export.add_argument("directory", metavar="DIR", help="output directory (created if missing)")
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from schemas.export import export_schemas

    for path in export_schemas(args.directory):
        print(path)
    return 0
