"""``pymicro models``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pymicro.cli._common import add_store_argument
from pymicro.errors import RegistryError
from pymicro.store.registry import STATUSES, Registry


# ---------------------------------------------------------------------- CLI: pymicro models


def _cmd_models(args) -> int:
    reg = Registry(args.store)
    if args.action == "list":
        records = reg.list(status=args.status)
        if not records:
            print(f"no models in {reg.root}")
            return 0
        from pymicro.tables import table

        print(table(["id", "kind", "params", "in", "classes", "status", "created"],
                    [[r.id, r.kind if r.kind == "model" else f"ensemble of {len(r.members)}", r.params,
                      r.input_size, r.n_classes, r.status, r.created[:19]] for r in records],
                    right={2, 3, 4}))
    elif args.action == "add":
        try:
            data = Path(args.blob).read_bytes()
        except OSError as e:
            raise RegistryError(f"cannot read {args.blob}: {e.strerror}") from None
        metrics = None
        if args.metrics:
            try:
                metrics = json.loads(args.metrics)
            except json.JSONDecodeError as e:
                raise RegistryError(f"--metrics is not JSON: {e}") from None
        print(reg.add(data, args.name, metrics=metrics))
    elif args.action == "show":
        print(json.dumps(reg.get(args.model_id).to_dict() | {"blob_path": str(reg.blob_path(args.model_id))},
                         indent=2))
    elif args.action == "rm":
        print(f"removed {reg.remove(args.model_id).id}")
    elif args.action == "status":
        print(f"{args.model_id}: {reg.set_status(args.model_id, args.status).status}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``pymicro models`` (list, add, show, rm, status) on the CLI's subparsers."""
    p = subparsers.add_parser(
        "models", help="the model registry: list, add, show, rm, status",
        description="Manage the model store (SQLite index plus blob files) that `pymicro mcp` serves. "
                    "The store is $PYMICRO_HOME/models (default ~/.pymicro/models) unless --store is given.")
    add_store_argument(p)
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = sub.add_parser("list", help="list the models")
    q.add_argument("--status", choices=STATUSES)
    q = sub.add_parser("add", help="add a .pmb blob or an ensemble container; prints its model id")
    q.add_argument("blob", help="path to a .pmb blob or an ensemble container (PMBC)")
    q.add_argument("--name", help="model name (default: the blob's own name)")
    q.add_argument("--metrics", help="metrics as a JSON object")
    q = sub.add_parser("show", help="print a model's record as JSON")
    q.add_argument("model_id")
    q = sub.add_parser("rm", help="remove a model and its files")
    q.add_argument("model_id")
    q = sub.add_parser("status", help="set a model's status")
    q.add_argument("model_id")
    q.add_argument("status", choices=STATUSES)
    p.set_defaults(func=_cmd_models)
    return p
