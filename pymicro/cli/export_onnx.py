"""``pymicro export-onnx``: export a blob to ONNX."""

from __future__ import annotations




def cmd_export_onnx(args) -> int:
    import pymicro

    data = pymicro.export_onnx(args.blob, args.out)
    print(f"wrote {args.out} ({len(data):,} bytes)")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("export-onnx", help="export a blob to ONNX",
                       description="Write an ONNX model computing exactly what the blob computes.")
    p.add_argument("blob", help="path to a .pmb blob or an ensemble container (members and combiner as one graph)")
    p.add_argument("out", help="path of the .onnx file to write")
    p.set_defaults(func=cmd_export_onnx)
