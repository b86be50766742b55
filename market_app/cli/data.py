"""``market data split | commitment``: an example task's shards for trainers, and the commitment of a data file (checked against a spec)."""

from __future__ import annotations

import argparse
from pathlib import Path

from market.errors import ConfigError
from market_app.cli.common import _chain_opts, _in_range, _load_dataset, _task_id, _task_spec


def cmd_data_split(args: argparse.Namespace) -> int:
    from market.data import example, example_splits, save_npz

    _in_range(args.trainers, "--trainers", 1, 1000)
    schema = example(args.example).schema  # an unknown name fails before anything is written
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror}") from None
    splits = example_splits(args.example, args.trainers, args.partition, args.seed)
    for i, shard in enumerate(splits.trainers, 1):
        save_npz(shard, out / f"trainer-{i}.npz")
    save_npz(splits.validation, out / "validation.npz")
    save_npz(splits.test, out / "test.npz")
    print(f"wrote {len(splits.trainers)} {args.example} trainer shards, validation.npz and test.npz to {out} "
          f"({schema.n_features} features, {schema.n_classes} classes)")
    return 0


def cmd_data_commitment(args: argparse.Namespace) -> int:
    from market.data import dataset_commitment
    from market.spec import load_spec_file

    if args.spec:
        schema = load_spec_file(args.spec).data
    elif args.task is not None:
        schema = _task_spec(args).data
    else:
        schema = None  # the built-in digits task
    try:
        data = _load_dataset(args.file, schema)
    except ConfigError as exc:
        if schema is None:  # say which spec the file was held against, and how to name the right one
            raise ConfigError(f"{exc} (checked against the built-in digits spec: pass --spec SPEC_FILE or --task T)") from None
        raise
    print("0x" + dataset_commitment(data).hex())
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("data", help="data utilities")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("split", help="write an example task's shards for N trainers plus validation/test sets (.npz)")
    q.add_argument("--example", default="digits", help="digits | breast_cancer | diabetes | mnist5k (default digits)")
    q.add_argument("--trainers", type=int, default=5)
    q.add_argument("--partition", default="iid")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--out", default="data")
    q.set_defaults(func=cmd_data_split)
    q = dsub.add_parser(
        "commitment", help="print the commitment of a data file (the validation_commitment of a task)",
        description="Check a data file against a task's spec and print its commitment (0x + 64 hex digits).",
    )
    q.add_argument("file", help=".npz with arrays x, y or .csv (label in the last column, optional header row)")
    which = q.add_mutually_exclusive_group()
    which.add_argument("--spec", metavar="SPEC_FILE", help="check the file against this spec (.json/.toml) "
                       "(default: the built-in digits spec)")
    which.add_argument("--task", type=_task_id, help="check the file against this task's published spec (reads chain and store)")
    _chain_opts(q, key=False)
    q.set_defaults(func=cmd_data_commitment)
